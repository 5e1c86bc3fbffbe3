"""The sha256 of a file: how cxr names exactly which checkpoint, predictions CSV, split or label
file a result came from (worklist cases, metrics.json, data_version).

    >>> from cxr.hashing import file_sha256
    >>> file_sha256("runs/fusion/best.pt")          # 64 hex digits
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (a checkpoint need not fit in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

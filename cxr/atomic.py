"""Atomic file writes: write a temp file beside the target, fsync, then rename over it.

A reader (the dashboard polling progress.json, a resumed run opening last.pt) never sees half a
file, and a crash mid-write leaves the old file intact.

    with atomic_open(path, "w") as f:
        f.write(text)
    write_json(path, {"auc": float("nan")})     # NaN/inf as null (cxr.jsonsafe)
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from cxr.jsonsafe import json_safe


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs):
    """Open a temp file for writing; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside `path`, created with mode 0o666 like open() does, so the kernel
    applies the process's umask (tempfile.mkstemp forces 0600; forcing any fixed mode would
    ignore a site's umask 077). O_EXCL: never an existing file, O_NOFOLLOW: never a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Indented JSON; NaN/inf written as null (JSON has neither), numpy scalars as numbers."""
    return write_text(path, json.dumps(json_safe(obj), indent=2) + "\n")

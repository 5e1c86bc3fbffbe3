"""cxr/hashing.py: a file's sha256, read in blocks, equals the digest of its bytes."""
from __future__ import annotations

import hashlib

import pytest

from cxr.hashing import file_sha256


def test_digest_of_a_file_larger_than_one_block(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB: several blocks
    (tmp_path / "best.pt").write_bytes(data)
    assert file_sha256(tmp_path / "best.pt") == hashlib.sha256(data).hexdigest()
    (tmp_path / "other.pt").write_bytes(data[:-1])
    assert file_sha256(tmp_path / "other.pt") != file_sha256(tmp_path / "best.pt")


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        file_sha256(tmp_path / "missing.pt")

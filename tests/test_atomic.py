import json
import os
import stat

import numpy as np
import pytest

from cxr.atomic import atomic_open, write_json, write_text


def test_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_error_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_json_is_strict_json_with_nan_as_null(tmp_path):
    target = write_json(tmp_path / "metrics.json", {"auc": np.float64("nan"), "n": np.int64(3),
                                                    "ci": (0.5, float("inf"))})
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    assert json.loads(text) == {"auc": None, "n": 3, "ci": [0.5, None]}


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o002])
def test_new_and_replaced_files_respect_the_umask(tmp_path, umask):
    """Like open(): mode 0o666 less the umask, for a new file and for one written over."""
    old = os.umask(umask)
    try:
        new = write_text(tmp_path / "new.txt", "x")
        with atomic_open(tmp_path / "bin.pt", "wb") as f:
            f.write(b"\0")
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as f:
            f.write("x")
        write_text(plain, "y")  # replacing a file gets the umask's mode, as a fresh open would
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for p in (new, tmp_path / "bin.pt", plain):
        assert stat.S_IMODE(p.stat().st_mode) == want, (p.name, oct(p.stat().st_mode))

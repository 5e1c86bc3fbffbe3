import json

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

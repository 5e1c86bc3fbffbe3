"""cxr/jsonsafe.py: NaN and infinity become None, numbers stay numbers, recursively."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxr.jsonsafe import finite_or_none, json_safe


@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), (np.float32(0.5), 0.5), ("0.75", 0.75), (3, 3.0),
    (float("nan"), None), (-math.inf, None), (np.float64("inf"), None), (None, None),
    ("n/a", None), ([1.0], None)])
def test_finite_or_none(value, expected):
    assert finite_or_none(value) == expected


def test_json_safe_walks_dicts_lists_and_tuples():
    metrics = {"per_finding": {"Mass": {"auc": np.float64("nan"), "n_pos": np.int64(4)}},
               "macro_auc_ci": (0.61, np.inf), "excluded_findings": ["Hernia"], 7: True,
               "split": None}
    out = json_safe(metrics)
    assert out == {"per_finding": {"Mass": {"auc": None, "n_pos": 4}},
                   "macro_auc_ci": [0.61, None], "excluded_findings": ["Hernia"], "7": True,
                   "split": None}
    assert type(out["per_finding"]["Mass"]["n_pos"]) is int
    json.dumps(out, allow_nan=False)  # strict JSON: would raise on any NaN left

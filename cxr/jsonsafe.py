"""JSON has no NaN or infinity: cxr writes them as null (metrics.json, progress.json, the
metrics in a checkpoint) and reads numbers back the same way.

    >>> finite_or_none(float("nan")), finite_or_none("0.25"), finite_or_none(None)
    (None, 0.25, None)
    >>> json_safe({"auc": np.float64("nan"), "n": np.int64(3), "ci": (0.5, np.inf)})
    {'auc': None, 'n': 3, 'ci': [0.5, None]}
"""
from __future__ import annotations

import math

import numpy as np


def finite_or_none(x) -> float | None:
    """x as a float, or None when it is None, not a number, NaN or infinite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def json_safe(obj):
    """NaN/inf -> None and numpy scalars -> Python, recursively through dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return finite_or_none(obj)
    return obj

"""Where cxr runs a model: the one rule for `cxr train`, `cxr evaluate`, `cxr predict` and the
dashboard.

    >>> pick_device("auto")        # CUDA if available, else Apple MPS, else CPU
    >>> pick_device("cuda", 3)     # GPU 3 (torchrun's LOCAL_RANK), or an error without CUDA
"""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """auto: CUDA if available, else Apple MPS, else CPU. An unavailable explicit choice is an
    error (never a silent CPU fallback for a run that asked for a GPU)."""
    if preference not in DEVICES:
        raise ValueError(f"device {preference!r} is not one of {', '.join(DEVICES)}")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device=cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank)
    if preference == "mps":
        if not _mps_available():
            raise ValueError("device=mps requested but MPS is not available")
        return torch.device("mps")
    return torch.device("cpu")

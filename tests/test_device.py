"""cxr/device.py: one rule for where models run; an unavailable or unknown choice is an error."""
from __future__ import annotations

import pytest
import torch

from cxr.device import pick_device


def test_cpu_and_auto(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto", local_rank=3) == torch.device("cuda", 3)  # torchrun's LOCAL_RANK


def test_unavailable_or_unknown_device_is_an_error_not_a_cpu_fallback(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        pick_device("mps")
    with pytest.raises(ValueError, match="'gpu' is not one of auto, cpu, cuda, mps"):
        pick_device("gpu")

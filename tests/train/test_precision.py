import pytest
import torch

from cxr.train import precision as prec
from cxr.train.precision import Precision, cpu_has_bf16, training_precision

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def fake_cpu(monkeypatch, **flags):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "x86_64", **flags})


@pytest.mark.parametrize("flags, native", [
    ({"avx512_bf16": True}, True),
    ({"amx_bf16": True, "avx512_bf16": False}, True),
    ({"avx2": True, "avx512_f": True, "avx512_bf16": False}, False),
    ({}, False),
])
def test_cpu_bf16_is_read_from_the_capability_flags(monkeypatch, flags, native):
    fake_cpu(monkeypatch, **flags)
    assert cpu_has_bf16() is native


def test_bf16_and_channels_last_on_a_bf16_cpu_and_fp32_elsewhere(monkeypatch):
    fake_cpu(monkeypatch, avx512_bf16=True)
    assert training_precision(CPU, amp=True, channels_last=True) == Precision("cpu", True, True)
    assert training_precision(CPU, amp=False, channels_last=True) == Precision("cpu", False, True)
    assert training_precision(CPU, amp=True, channels_last=False) == Precision("cpu", True, False)
    assert training_precision(MPS, amp=True, channels_last=True) == Precision("mps", False, False)
    fake_cpu(monkeypatch, avx2=True)
    assert training_precision(CPU, amp=True, channels_last=True) == Precision("cpu", False, False)
    assert training_precision(CUDA, amp=True, channels_last=True) == Precision("cuda", True, True)


def test_autocast_runs_the_forward_in_bf16_only_when_on():
    layer, x = torch.nn.Linear(4, 2), torch.rand(3, 4)
    with Precision("cpu", True, False).autocast():
        assert layer(x).dtype == torch.bfloat16
    with Precision("cpu", False, False).autocast():
        assert layer(x).dtype == torch.float32
    assert Precision("cpu", True, True).name == "bf16 autocast + channels_last"
    assert Precision("cpu", False, False).to_dict() == {"autocast": None, "channels_last": False}


@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_uses_logs_and_records_its_precision(monkeypatch, tmp_path, base_values,
                                                         native):
    from cxr.checkpoint import load_checkpoint
    from cxr.train import TrainConfig, train
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: native)
    run = tmp_path / "run"
    assert train(TrainConfig(**{**base_values, "epochs": 1, "max_steps_per_epoch": 2}), run) == 0
    meta = load_checkpoint(run / "best.pt")["meta"]
    assert meta["precision"] == {"autocast": "bfloat16" if native else None,
                                 "channels_last": native}
    name = "bf16 autocast + channels_last" if native else "fp32"
    assert f"precision: {name}" in (run / "train.log").read_text()
    assert meta["metrics"]["val_macro_auc"] is None or 0 <= meta["metrics"]["val_macro_auc"] <= 1

"""Training precision: bf16 autocast and channels_last where the hardware runs them natively.

    from cxr.train.precision import training_precision
    p = training_precision(torch.device("cpu"), amp=True, channels_last=True)
    p.name                                 # "bf16 autocast + channels_last" on an AVX512-BF16 CPU
    model.to(memory_format=p.memory_format)
    with p.autocast():
        logits = model(x.contiguous(memory_format=p.memory_format))
    loss = loss_fn(logits.float(), y)      # the loss stays fp32

CUDA: bf16 autocast (`amp`) and channels_last as configured. CPU: the same only when it has
native bf16 instructions (x86 AVX512-BF16 or AMX-BF16, `cpu_has_bf16`); elsewhere bf16 is
emulated and slower, so training stays fp32 and contiguous. MPS: fp32. Training steps only:
validation (cxr/train/loop.py), evaluation and prediction score in fp32, so the metrics a
checkpoint records are the ones `cxr evaluate` reproduces from its weights. Measured side by
side: bench/bench_precision.py (BENCHMARKS.md, "CPU training precision").
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

# x86 flags of torch.cpu.get_capabilities() that mean bf16 matmuls and convolutions run in
# hardware (oneDNN uses them). ARM's bf16 is left out: not measured here.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (the flags torch's cpuinfo reads)."""
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag, False) for flag in BF16_FLAGS)


@dataclass(frozen=True)
class Precision:
    device_type: str                      # "cuda", "cpu", "mps"
    bf16: bool                            # autocast the forward pass to bfloat16
    channels_last: bool                   # NHWC model weights and inputs

    @property
    def name(self) -> str:
        return ("bf16 autocast" if self.bf16 else "fp32") + (
            " + channels_last" if self.channels_last else "")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        if self.bf16:
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_dict(self) -> dict:
        """JSON-safe, for the checkpoint's meta."""
        return {"autocast": "bfloat16" if self.bf16 else None,
                "channels_last": self.channels_last}


def training_precision(device: torch.device, amp: bool, channels_last: bool) -> Precision:
    """The config's `amp` / `channels_last` where the device runs them fast, fp32 elsewhere."""
    fast = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    return Precision(device.type, bf16=amp and fast, channels_last=channels_last and fast)

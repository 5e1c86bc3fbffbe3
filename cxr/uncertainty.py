"""Probabilities and Monte-Carlo dropout uncertainty (the one place predictions get a sigmoid).

    from cxr.uncertainty import predict_proba, mc_predict
    probs = predict_proba(model, x)                    # torch (B, 14), eval mode, no grad
    r = mc_predict(model, x, passes=25, seed=0)        # numpy float32 arrays
    r.mean, r.std          # (B, 14): probability and its uncertainty
    r.samples              # (passes, B, 14): per-pass probabilities, for histograms
    r.uncertain_classes    # (B, 14) bool: std > threshold (default 0.1, the report's)
    r.uncertain            # (B,) bool: any class uncertain

Fast path: every registry model keeps its dropout in `classify`, after pooling, and its
backbone is deterministic in eval mode, so the backbone runs once per image, the pooled
features are repeated `passes` times and the head runs once on the (passes * B, C) batch with
only the Dropout modules in train mode (BatchNorm stays in eval). That is the same
distribution as `mc_predict_naive` (passes full forward passes with dropout on) at about
the cost of one forward pass: tests/test_uncertainty.py checks the distribution,
bench/bench_models.py the cost. Module modes are restored afterwards, exactly as they were.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

UNCERTAIN_STD = 0.1  # the report's threshold on the MC standard deviation
DEFAULT_PASSES = 25  # the report used 25-100 stochastic passes


def passes_for(meta: dict, requested: int | None = None) -> int:
    """MC passes for a checkpoint: what the caller asked for, else the run's `mc_passes`
    (TrainConfig, saved in the checkpoint's meta), else DEFAULT_PASSES."""
    if requested is not None:
        return int(requested)
    return int((meta.get("config") or {}).get("mc_passes") or DEFAULT_PASSES)


def to_proba(logits: torch.Tensor) -> torch.Tensor:
    """Logits -> probabilities. Every prediction path in cxr goes through here."""
    return torch.sigmoid(logits)


@contextlib.contextmanager
def _modes(model: nn.Module, dropout_on: bool):
    """Eval mode (optionally with dropout layers in train mode), each module restored after."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    if dropout_on:
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.train()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Seeds torch's RNG inside the block only; the caller's global RNG state is untouched."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Deterministic probabilities (B, classes): eval mode, no grad, modes restored."""
    with _modes(model, dropout_on=False):
        return to_proba(model(x))


def flag_uncertain(std: np.ndarray, threshold: float = UNCERTAIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """(per-image any-class flag (B,), per-class flags (B, C)) for std > threshold."""
    classes = np.asarray(std) > threshold
    return classes.any(axis=-1), classes


@dataclass
class MCResult:
    mean: np.ndarray               # (B, C) float32
    std: np.ndarray                # (B, C) float32, population std over passes
    samples: np.ndarray            # (passes, B, C) float32
    uncertain: np.ndarray          # (B,) bool
    uncertain_classes: np.ndarray  # (B, C) bool
    features: np.ndarray | None = None  # (B, D) pooled features (mc_predict): cxr.readout's OOD input


def _result(probs: torch.Tensor, threshold: float) -> MCResult:
    samples = probs.float().cpu().numpy()
    std = samples.std(axis=0)
    uncertain, classes = flag_uncertain(std, threshold)
    return MCResult(samples.mean(axis=0), std, samples, uncertain, classes)


def _check(passes: int) -> None:
    if passes < 2:
        raise ValueError(f"MC dropout needs passes >= 2 to estimate a std, got {passes}")


@torch.no_grad()
def mc_predict(model: nn.Module, x: torch.Tensor, passes: int = 25, seed: int | None = None,
               threshold: float = UNCERTAIN_STD) -> MCResult:
    """MC dropout with the backbone run once and the head sampled `passes` times, batched."""
    _check(passes)
    with _modes(model, dropout_on=False):
        pooled = model.pool_features(model.forward_features(x))  # (B, C)
    with _modes(model, dropout_on=True), _seeded(seed, x.device):
        logits = model.classify(pooled.repeat(passes, 1))     # (passes * B, classes)
    result = _result(to_proba(logits).view(passes, x.shape[0], -1), threshold)
    result.features = pooled.float().cpu().numpy()  # the OOD score needs no second backbone pass
    return result


@torch.no_grad()
def mc_predict_naive(model: nn.Module, x: torch.Tensor, passes: int = 25, seed: int | None = None,
                     threshold: float = UNCERTAIN_STD) -> MCResult:
    """Reference MC dropout: `passes` full forward passes with dropout on (slow; tests, bench)."""
    _check(passes)
    with _modes(model, dropout_on=True), _seeded(seed, x.device):
        probs = torch.stack([to_proba(model(x)) for _ in range(passes)])
    return _result(probs, threshold)

"""Probabilities and Monte-Carlo dropout uncertainty (the one place predictions get a sigmoid),
and the one rule that calls an image uncertain.

    from cxr.uncertainty import predict_proba, mc_predict, film_seeds_for, image_uncertainty
    probs = predict_proba(model, x)                    # torch (B, 14), eval mode, no grad
    r = mc_predict(model, x, passes=25, film_seeds=film_seeds_for(0, names))  # numpy float32
    r.mean, r.std          # (B, 14): probability and its uncertainty
    r.samples              # (passes, B, 14): per-pass probabilities, for histograms
    r.uncertain_classes    # (B, 14) bool: std > threshold (default 0.1, the report's)
    r.score, r.uncertain   # (B,): the image's uncertainty score and flag under r.rule
    score, flag = image_uncertainty(std, rule="mean")  # the same rule on stored stds

The image rule (`UNCERTAINTY_RULES`): "mean", the report's ("Model Performance and
Evaluation": an image is uncertain when the average over the 14 findings of the MC-dropout
standard deviation exceeds 0.1): score = mean std, uncertain when score > UNCERTAIN_STD.
"any", the per-finding rule: score = max std, uncertain when any finding's std > UNCERTAIN_STD.
A run's rule is TrainConfig.uncertainty_rule (in every checkpoint's meta); `rule_for` reads it.

Fast path: every registry model keeps its dropout in `classify`, after pooling, and its
backbone is deterministic in eval mode, so the backbone runs once per image, the pooled
features are repeated `passes` times and the head runs on them with only the Dropout modules
in train mode (BatchNorm stays in eval). That is the same distribution as `mc_predict_naive`
(passes full forward passes with dropout on) at about the cost of one forward pass:
tests/test_uncertainty.py checks the distribution, bench/bench_models.py the cost. Module
modes are restored afterwards, exactly as they were.

Dropout noise per film: with `film_seeds` (what `cxr predict` and `cxr evaluate` pass, from
`film_seeds_for(seed, names)`: a stable hash of the seed and the film's name), the head runs
once per film, on (passes, C), under that film's seed, so a film's noise does not depend on
which films share its batch or which torchrun rank scores it. With one `seed` (the Predict
page, one film) the head runs once on the (passes * B, C) batch, from one stream.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

UNCERTAIN_STD = 0.1  # the report's threshold on the MC standard deviation
DEFAULT_PASSES = 25  # the report used 25-100 stochastic passes
UNCERTAINTY_RULES = ("mean", "any")  # image score: mean std (the report's) or max std
DEFAULT_RULE = "mean"
RULE_TEXT = {"mean": "the mean MC-dropout std over the findings > {t}",
             "any": "some finding's MC-dropout std > {t}"}


def passes_for(meta: dict, requested: int | None = None) -> int:
    """MC passes for a checkpoint: what the caller asked for, else the run's `mc_passes`
    (TrainConfig, saved in the checkpoint's meta), else DEFAULT_PASSES."""
    if requested is not None:
        return int(requested)
    return int((meta.get("config") or {}).get("mc_passes") or DEFAULT_PASSES)


def check_rule(rule: str) -> str:
    if rule not in UNCERTAINTY_RULES:
        raise ValueError(f"uncertainty rule {rule!r} is not one of {', '.join(UNCERTAINTY_RULES)}")
    return rule


def rule_for(meta: dict, requested: str | None = None) -> tuple[str, str]:
    """(rule, where it came from) for a checkpoint: the caller's request (--uncertainty-rule),
    else the run's TrainConfig.uncertainty_rule, else DEFAULT_RULE for a checkpoint saved before
    the setting existed; `where` says which, in words for a log line or the page."""
    if requested is not None:
        return check_rule(requested), "requested"
    saved = (meta.get("config") or {}).get("uncertainty_rule")
    if saved is not None:
        return check_rule(saved), "the checkpoint's config"
    return DEFAULT_RULE, "the default: the checkpoint predates the uncertainty_rule setting"


def describe_rule(rule: str, threshold: float = UNCERTAIN_STD) -> str:
    """'mean (uncertain when the mean MC-dropout std over the findings > 0.1)'."""
    return f"{check_rule(rule)} (uncertain when {RULE_TEXT[rule].format(t=threshold)})"


def image_uncertainty(std: np.ndarray, rule: str = DEFAULT_RULE,
                      threshold: float = UNCERTAIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """(score, flag) per image from per-finding stds (..., C): score is the mean ("mean") or
    the max ("any") over the last axis, flag is score > threshold. The one definition of an
    uncertain image: MC results, predictions CSVs, selective prediction and the worklist."""
    std = np.asarray(std, dtype=np.float64)
    score = std.mean(axis=-1) if check_rule(rule) == "mean" else std.max(axis=-1)
    return score, score > threshold


def film_seed(seed: int, name: str) -> int:
    """A film's dropout seed from (seed, its name): blake2b, stable across processes and
    machines (Python's hash() is salted per process), in [0, 2**63)."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def film_seeds_for(seed: int, names: Sequence[str]) -> list[int]:
    return [film_seed(seed, str(n)) for n in names]


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


@dataclass
class MCResult:
    mean: np.ndarray               # (B, C) float32
    std: np.ndarray                # (B, C) float32, population std over passes
    samples: np.ndarray            # (passes, B, C) float32
    uncertain: np.ndarray          # (B,) bool: score > threshold (image_uncertainty)
    uncertain_classes: np.ndarray  # (B, C) bool: std > threshold, per finding
    score: np.ndarray | None = None  # (B,) float64: the image's uncertainty under `rule`
    rule: str = DEFAULT_RULE
    # (B, D) pooled features (mc_predict): cxr.readout's OOD input
    features: np.ndarray | None = None


def _result(probs: torch.Tensor, threshold: float, rule: str) -> MCResult:
    samples = probs.float().cpu().numpy()
    std = samples.std(axis=0)
    score, uncertain = image_uncertainty(std, rule, threshold)
    return MCResult(samples.mean(axis=0), std, samples, uncertain, std > threshold, score, rule)


def _check(passes: int) -> None:
    if passes < 2:
        raise ValueError(f"MC dropout needs passes >= 2 to estimate a std, got {passes}")


@torch.no_grad()
def sample_head(model: nn.Module, pooled: torch.Tensor, passes: int, seed: int | None = None,
                film_seeds: Sequence[int] | None = None) -> torch.Tensor:
    """(passes, B, classes) probabilities from the head with dropout on, over pooled (B, C):
    one call per film under its `film_seeds` entry (module docstring), else one call over the
    (passes * B, C) batch, seeded by `seed` (None: fresh noise)."""
    with _modes(model, dropout_on=True):
        if film_seeds is None:
            with _seeded(seed, pooled.device):
                logits = model.classify(pooled.repeat(passes, 1))  # (passes * B, classes)
            return to_proba(logits).view(passes, pooled.shape[0], -1)
        if seed is not None:
            raise ValueError("pass either seed (one stream) or film_seeds (one per film), not both")
        if len(film_seeds) != pooled.shape[0]:
            raise ValueError(f"{len(film_seeds)} film seeds for {pooled.shape[0]} films")
        per_film = []
        for row, film in zip(pooled, film_seeds):
            with _seeded(film, pooled.device):
                # the sigmoid too, per film: vectorised kernels round a tensor's tail elements
                # differently, so one over the whole batch would differ by an ulp with its size
                per_film.append(to_proba(model.classify(row[None].repeat(passes, 1))))
        return torch.stack(per_film, dim=1)  # (passes, B, classes)


@torch.no_grad()
def mc_predict(model: nn.Module, x: torch.Tensor, passes: int = 25, seed: int | None = None,
               threshold: float = UNCERTAIN_STD, rule: str = DEFAULT_RULE,
               film_seeds: Sequence[int] | None = None) -> MCResult:
    """MC dropout with the backbone run once and the head sampled `passes` times (sample_head:
    per film under `film_seeds`, else batched under `seed`)."""
    _check(passes)
    check_rule(rule)
    with _modes(model, dropout_on=False):
        pooled = model.pool_features(model.forward_features(x))  # (B, C)
    result = _result(sample_head(model, pooled, passes, seed, film_seeds), threshold, rule)
    result.features = pooled.float().cpu().numpy()  # the OOD score needs no second backbone pass
    return result


@torch.no_grad()
def mc_predict_naive(model: nn.Module, x: torch.Tensor, passes: int = 25, seed: int | None = None,
                     threshold: float = UNCERTAIN_STD, rule: str = DEFAULT_RULE) -> MCResult:
    """Reference MC dropout: `passes` full forward passes with dropout on (slow; tests, bench)."""
    _check(passes)
    with _modes(model, dropout_on=True), _seeded(seed, x.device):
        probs = torch.stack([to_proba(model(x)) for _ in range(passes)])
    return _result(probs, threshold, rule)

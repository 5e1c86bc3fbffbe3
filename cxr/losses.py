"""Multi-label losses on logits (B, 14) and 0/1 targets (B, 14); the sigmoid happens inside.

    from cxr.losses import make_loss, pos_weight_from_targets
    loss_fn = make_loss("focal")                 # alpha 0.25, gamma 2, the report's printed formula
    loss_fn = make_loss("focal", alpha_mode="balanced")            # torchvision's alpha_t
    loss_fn = make_loss("weighted_bce", pos_weight=pos_weight_from_targets(train_targets))
    loss = loss_fn(logits, targets)

All three are stable for any logit: they use log-sum-exp forms
(`binary_cross_entropy_with_logits`), never log(sigmoid(x)) of a rounded probability.
"mean" averages over every (image, class) element.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


ALPHA_MODES = ("balanced", "constant")


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.25,
               gamma: float = 2.0, reduction: str = "mean",
               alpha_mode: str = "constant") -> torch.Tensor:
    """Focal loss (Lin et al. 2017) via torchvision: alpha-weighted (1 - p_t)^gamma * BCE.

    The report prints one formula and describes another, so both readings are offered:
    - "balanced": torchvision's alpha_t, alpha on positives and 1 - alpha on negatives (the
      report's words: alpha "balances the importance of positive versus negative examples";
      with alpha 0.25 a positive weighs a third of a negative);
    - "constant" (the default): the report's printed formula -alpha (1 - p_t)^gamma log(p_t),
      every element times alpha (a pure scale of the loss). It trained better on the demo, two
      seeds side by side (MODEL_CARD.md, "Focal alpha: the two readings").
    alpha None disables the weighting in either mode.
    """
    if alpha_mode not in ALPHA_MODES:
        raise ValueError(f"focal alpha_mode must be one of {ALPHA_MODES}, got {alpha_mode!r}")
    targets = targets.to(logits.dtype)
    if alpha is None or alpha_mode == "constant":
        loss = sigmoid_focal_loss(logits, targets, -1, gamma, reduction)  # alpha < 0: unweighted
        return loss if alpha is None else alpha * loss
    return sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)


def bce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction=reduction)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight,
                 reduction: str = "mean") -> torch.Tensor:
    """BCE with each class's positive term multiplied by pos_weight[c]
    (see pos_weight_from_targets)."""
    pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction=reduction,
                                              pos_weight=pos_weight)


def pos_weight_from_targets(targets) -> list[float]:
    """Per-class negatives/positives over the TRAINING targets (N, C); a class without positives
    gets weight 1.0 rather than infinity (there is nothing to up-weight). JSON-safe list."""
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"targets must be (N, classes), got shape {y.shape}")
    pos = y.sum(axis=0)
    neg = y.shape[0] - pos
    return [float(n / p) if p > 0 else 1.0 for n, p in zip(neg, pos)]


LOSSES = {"focal": focal_loss, "bce": bce, "weighted_bce": weighted_bce}


def make_loss(name: str, **params):
    """`loss_fn(logits, targets)` for a config's loss name and parameters (checked here, so a
    typo fails before training starts)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    fn = LOSSES[name]
    try:
        inspect.signature(fn).bind(None, None, **params)
    except TypeError as err:
        raise ValueError(f"bad parameters for loss {name!r}: {params} ({err})") from None
    if name == "focal" and params.get("alpha_mode", "constant") not in ALPHA_MODES:
        raise ValueError(f"focal alpha_mode must be one of {ALPHA_MODES}, "
                         f"got {params['alpha_mode']!r}")
    if name == "weighted_bce":
        params["pos_weight"] = [float(w) for w in params["pos_weight"]]
    return functools.partial(fn, **params)

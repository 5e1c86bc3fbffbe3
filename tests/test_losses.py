"""Losses against an independent numpy float64 reference, including logits of +-100."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr.losses import bce, focal_loss, make_loss, pos_weight_from_targets, weighted_bce

EXTREME = [-100.0, -20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0, 100.0]


def softplus(x):  # log(1 + exp(x)), stable in float64
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def ref_bce(x, t, pos_weight=1.0):
    # -[w t log s(x) + (1-t) log(1-s(x))] with -log s(x) = softplus(-x), -log(1-s(x)) = softplus(x)
    return pos_weight * t * softplus(-x) + (1 - t) * softplus(x)


def ref_focal(x, t, alpha=0.25, gamma=2.0):
    p = np.exp(-softplus(-x))  # sigmoid
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return alpha_t * (1 - p_t) ** gamma * ref_bce(x, t)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.repeat(EXTREME, 2), rng.normal(0, 4, 46)]).reshape(4, 16)[:, :14]
    t = np.zeros_like(x)
    t.flat[::2] = 1  # every extreme logit appears with target 1 and with target 0
    return x, t


def tensors(x, t):
    return torch.tensor(x, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 1.0), (0.9, 0.0)])
def test_focal_matches_reference(batch, alpha, gamma):
    x, t = batch
    got = focal_loss(*tensors(x, t), alpha=alpha, gamma=gamma, reduction="none",
                     alpha_mode="balanced").double().numpy()
    want = ref_focal(x, t, alpha, gamma)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    mean = focal_loss(*tensors(x, t), alpha=alpha, gamma=gamma, alpha_mode="balanced").item()
    assert mean == pytest.approx(want.mean(), rel=1e-5)


def test_focal_alpha_weights_positives():
    x = torch.tensor([[2.0, 2.0]])
    pos = focal_loss(x, torch.tensor([[1.0, 1.0]]), alpha=0.25, reduction="sum",
                     alpha_mode="balanced")
    no_alpha = focal_loss(x, torch.tensor([[1.0, 1.0]]), alpha=None, reduction="sum")
    assert pos.item() == pytest.approx(0.25 * no_alpha.item())


def test_extreme_logits_give_finite_loss_and_gradients():
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    for fn in (focal_loss, bce, lambda a, b: weighted_bce(a, b, [2.0] * 4)):
        x.grad = None
        loss = fn(x, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # confidently wrong: 100 * (1 - alpha) for a negative, 100 * alpha for a positive
    wrong = focal_loss(x.detach(), t, reduction="none", alpha_mode="balanced")[0, 2:]
    assert wrong.tolist() == pytest.approx([75.0, 25.0])
    wrong = focal_loss(x.detach(), t, reduction="none")[0, 2:]  # constant: 100 * alpha for both
    assert wrong.tolist() == pytest.approx([25.0, 25.0])


def test_training_and_the_loss_share_one_default_alpha_mode():
    import inspect
    from cxr.train.config import TrainConfig
    default = inspect.signature(focal_loss).parameters["alpha_mode"].default
    assert default == TrainConfig().focal_alpha_mode == "constant"


def test_bce_and_weighted_bce_match_reference(batch):
    x, t = batch
    np.testing.assert_allclose(bce(*tensors(x, t), reduction="none").numpy(), ref_bce(x, t),
                               rtol=1e-5, atol=1e-6)
    w = np.linspace(0.5, 20, 14)
    got = weighted_bce(*tensors(x, t), w, reduction="none").numpy()
    np.testing.assert_allclose(got, ref_bce(x, t, w), rtol=1e-5, atol=1e-6)
    assert weighted_bce(*tensors(x, t), w).item() == pytest.approx(ref_bce(x, t, w).mean(),
                                                                   rel=1e-5)


def test_pos_weight_from_targets():
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    assert pos_weight_from_targets(y) == [3.0, 1.0, 1 / 3]  # no positives -> 1.0, not inf
    with pytest.raises(ValueError, match="shape"):
        pos_weight_from_targets(np.zeros(5))


def test_make_loss(batch):
    x, t = tensors(*batch)
    assert make_loss("focal", alpha=0.5)(x, t).item() == focal_loss(x, t, alpha=0.5).item()
    assert make_loss("bce")(x, t).item() == bce(x, t).item()
    loss = make_loss("weighted_bce", pos_weight=torch.full((14,), 3.0))
    assert loss(x, t).item() == pytest.approx(weighted_bce(x, t, [3.0] * 14).item())
    with pytest.raises(ValueError,
                       match="unknown loss 'dice'; available: focal, bce, weighted_bce"):
        make_loss("dice")
    with pytest.raises(ValueError, match="bad parameters for loss 'focal'"):
        make_loss("focal", gama=2)
    with pytest.raises(ValueError, match="bad parameters for loss 'weighted_bce'"):
        make_loss("weighted_bce")


def test_focal_alpha_modes_against_hand_computed_values():
    """Two elements, alpha 0.25, gamma 2, written out by hand:
    a positive with logit 0:     p = 0.5,  p_t = 0.5,  (1 - p_t)^2 = 0.25,   -log p_t = ln 2
    a negative with logit ln 3:  p = 0.75, p_t = 0.25, (1 - p_t)^2 = 0.5625, -log p_t = 2 ln 2
    balanced (alpha on positives, 1 - alpha on negatives):
        0.25 * 0.25 * ln 2 = 0.0625 ln 2   and   0.75 * 0.5625 * 2 ln 2 = 0.84375 ln 2
    constant (alpha on every element, the report's printed formula):
        0.25 * 0.25 * ln 2 = 0.0625 ln 2   and   0.25 * 0.5625 * 2 ln 2 = 0.28125 ln 2"""
    logits = torch.tensor([[0.0, float(np.log(3.0))]])
    targets = torch.tensor([[1.0, 0.0]])
    ln2 = float(np.log(2.0))
    expected = {"balanced": [0.0625 * ln2, 0.84375 * ln2],
                "constant": [0.0625 * ln2, 0.28125 * ln2]}
    for mode, want in expected.items():
        got = focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none",
                         alpha_mode=mode)
        np.testing.assert_allclose(got.numpy()[0], want, rtol=1e-6)
        loss_fn = make_loss("focal", alpha=0.25, gamma=2.0, alpha_mode=mode)
        assert loss_fn(logits, targets).item() == pytest.approx(sum(want) / 2, rel=1e-6)
    # the means: (0.0625 + 0.84375) / 2 and (0.0625 + 0.28125) / 2
    balanced = focal_loss(logits, targets, alpha_mode="balanced").item()
    constant = focal_loss(logits, targets, alpha_mode="constant").item()
    assert (balanced, constant) == (pytest.approx(0.453125 * ln2), pytest.approx(0.171875 * ln2))


def test_focal_alpha_none_is_unweighted_in_both_modes_and_bad_mode_is_named(batch):
    x, t = tensors(*batch)
    plain = focal_loss(x, t, alpha=None, alpha_mode="balanced")
    assert torch.equal(plain, focal_loss(x, t, alpha=None, alpha_mode="constant"))
    assert focal_loss(x, t, alpha=0.5, alpha_mode="constant").item() == pytest.approx(
        0.5 * plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="alpha_mode must be one of.*'weird'"):
        focal_loss(x, t, alpha_mode="weird")
    with pytest.raises(ValueError, match="alpha_mode must be one of.*'weird'"):
        make_loss("focal", alpha_mode="weird")  # before training starts, not at the first batch

"""MC dropout: the fast path (backbone once, head sampled) is the naive method's distribution."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cxr.models import create_model
from cxr.models.base import CXRModel
from cxr.uncertainty import (DEFAULT_PASSES, flag_uncertain, mc_predict, mc_predict_naive, passes_for,
                             predict_proba)

torch.set_num_threads(1)


class TinyBN(CXRModel):
    """BatchNorm in the backbone (must stay in eval) and a two-dropout head like the report's."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.4), nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.4),
                                  nn.Linear(16, 14))
        self.gradcam_layer = self.backbone
        self._set_meta(dict(num_classes=14), 16, False)

    def forward_features(self, x):
        return self.backbone(x)


@pytest.fixture
def simple():
    torch.manual_seed(0)
    model = create_model("simple_cnn")
    with torch.no_grad():
        model.head[-1].weight.mul_(30)  # spread the probabilities so the std is far from 0
    return model


def assert_same_distribution(a: np.ndarray, b: np.ndarray, z: float = 5.0) -> None:
    """Means and variances over axis 0 agree within z standard errors (the variance's standard
    error uses the 4th central moment, since MC probabilities are far from normal)."""
    n = a.shape[0]
    se_mean = np.sqrt((a.var(0) + b.var(0)) / n)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) <= z * se_mean + 1e-6)
    m4 = lambda s: ((s - s.mean(0)) ** 4).mean(0)
    se_var = np.sqrt((m4(a) - a.var(0) ** 2 + m4(b) - b.var(0) ** 2) / n)
    assert np.all(np.abs(a.var(0) - b.var(0)) <= z * se_var + 1e-8)


def test_fast_equals_naive_in_distribution(simple):
    x = torch.randn(2, 3, 16, 16)
    fast = mc_predict(simple, x, passes=2000, seed=1)
    naive = mc_predict_naive(simple, x, passes=2000, seed=2)
    assert fast.samples.shape == naive.samples.shape == (2000, 2, 14)
    assert fast.std.min() > 0.02  # dropout really was on, so a wrong path could not pass
    assert_same_distribution(fast.samples.astype(np.float64), naive.samples.astype(np.float64))


def test_batchnorm_stays_eval_and_modes_are_restored():
    torch.manual_seed(0)
    model = TinyBN()
    model.train()
    model.head[0].eval()  # a mixed state must come back exactly as it was
    before = {n: m.training for n, m in model.named_modules()}
    stats = model.backbone[1].running_mean.clone()
    x = torch.randn(3, 3, 8, 8)
    fast = mc_predict(model, x, passes=4000, seed=0)
    naive = mc_predict_naive(model, x, passes=4000, seed=0)
    assert {n: m.training for n, m in model.named_modules()} == before
    assert torch.equal(model.backbone[1].running_mean, stats)
    assert fast.std.min() > 0.01
    assert_same_distribution(fast.samples.astype(np.float64), naive.samples.astype(np.float64))


def test_seeded_runs_reproducible_and_global_rng_untouched(simple):
    x = torch.randn(2, 3, 32, 32)
    state = torch.get_rng_state()
    a = mc_predict(simple, x, passes=25, seed=7)
    b = mc_predict(simple, x, passes=25, seed=7)
    c = mc_predict(simple, x, passes=25, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, c.samples)
    assert np.array_equal(mc_predict_naive(simple, x, 5, seed=3).samples,
                          mc_predict_naive(simple, x, 5, seed=3).samples)


def test_result_fields_and_threshold_flags(simple):
    x = torch.randn(3, 3, 32, 32)
    r = mc_predict(simple, x, passes=30, seed=0)
    assert r.mean.shape == r.std.shape == r.uncertain_classes.shape == (3, 14)
    assert r.uncertain.shape == (3,) and r.mean.dtype == np.float32
    np.testing.assert_allclose(r.mean, r.samples.mean(0), rtol=1e-6)
    np.testing.assert_allclose(r.std, r.samples.std(0), rtol=1e-5)
    assert np.array_equal(r.uncertain_classes, r.std > 0.1)
    assert np.array_equal(r.uncertain, r.uncertain_classes.any(1))
    assert mc_predict(simple, x, 30, seed=0, threshold=0.0).uncertain.all()
    assert not mc_predict(simple, x, 30, seed=0, threshold=1.0).uncertain.any()
    images, classes = flag_uncertain(np.array([[0.05, 0.2], [0.1, 0.0]]))
    assert images.tolist() == [True, False] and classes.tolist() == [[False, True], [False, False]]
    with pytest.raises(ValueError, match="passes >= 2"):
        mc_predict(simple, x, passes=1)


def test_predict_proba_is_eval_sigmoid_and_restores_mode(simple):
    simple.train()
    x = torch.randn(2, 3, 32, 32)
    p = predict_proba(simple, x)
    assert simple.training and not p.requires_grad
    simple.eval()
    assert torch.allclose(p, torch.sigmoid(simple(x)))
    assert torch.equal(p, predict_proba(simple, x))  # deterministic: dropout off


@pytest.mark.parametrize("name", ["densenet121", "efficientnet_b0", "fusion", "fusion_xattn"])
def test_backbone_is_deterministic_with_dropout_on(name):
    """The fast path's premise: no dropout acts before `classify`, so one backbone pass is exact."""
    from cxr.uncertainty import _modes
    model = create_model(name)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), _modes(model, dropout_on=True):
        assert torch.equal(model.forward_features(x), model.forward_features(x))
        assert model(x).ne(model(x)).any()  # while the head does sample
    r = mc_predict(model, x, passes=8, seed=0)
    assert r.samples.shape == (8, 1, 14) and (r.std > 0).all()


def test_passes_for_prefers_the_request_then_the_runs_config():
    meta = {"config": {"mc_passes": 40}}
    assert passes_for(meta, 7) == 7                 # --passes given
    assert passes_for(meta) == 40                   # the run's TrainConfig.mc_passes
    assert passes_for({"config": {}}) == passes_for({}) == DEFAULT_PASSES == 25

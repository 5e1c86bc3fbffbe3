"""MC dropout: the fast path (backbone once, head sampled) is the naive method's distribution;
per-film dropout noise that does not depend on the batch; the image uncertainty rules."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cxr.models import create_model
from cxr.models.base import CXRModel
from cxr.uncertainty import (DEFAULT_PASSES, DEFAULT_RULE, UNCERTAIN_STD, UNCERTAINTY_RULES,
                             describe_rule, film_seed, film_seeds_for, image_uncertainty,
                             mc_predict, mc_predict_naive, passes_for, predict_proba, rule_for,
                             sample_head)

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
    m4 = lambda s: ((s - s.mean(0)) ** 4).mean(0)  # noqa: E731
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
    assert r.rule == DEFAULT_RULE == "mean" and r.score.shape == (3,)
    np.testing.assert_allclose(r.score, r.std.mean(axis=1), rtol=1e-6)
    assert np.array_equal(r.uncertain, r.score > 0.1)
    by_any = mc_predict(simple, x, 30, seed=0, rule="any")
    np.testing.assert_array_equal(by_any.std, r.std)
    assert np.array_equal(by_any.uncertain, r.uncertain_classes.any(1))
    assert mc_predict(simple, x, 30, seed=0, threshold=0.0).uncertain.all()
    assert not mc_predict(simple, x, 30, seed=0, threshold=1.0).uncertain.any()
    with pytest.raises(ValueError, match="passes >= 2"):
        mc_predict(simple, x, passes=1)
    with pytest.raises(ValueError, match="uncertainty rule 'max' is not one of mean, any"):
        mc_predict(simple, x, passes=2, rule="max")


# -- the image rule: the report's mean std, or any finding's std --------------------------------

def test_rules_on_a_hand_made_std_matrix():
    std = np.full((3, 14), 0.02)
    std[0, 4] = 0.5            # one wide finding, small mean: (0.5 + 13 * 0.02) / 14 = 0.054
    std[1] = 0.09              # every finding just under 0.1: mean 0.09, max 0.09
    std[2] = 0.12              # every finding above: uncertain either way
    score, flag = image_uncertainty(std, "mean")
    np.testing.assert_allclose(score, [(0.5 + 13 * 0.02) / 14, 0.09, 0.12])
    assert flag.tolist() == [False, False, True]
    score_any, flag_any = image_uncertainty(std, "any")
    np.testing.assert_allclose(score_any, [0.5, 0.09, 0.12])
    assert flag_any.tolist() == [True, False, True]
    # the reverse case: the rules rank images 0 and 1 in opposite orders (a worklist sorted by
    # the image score shows them the other way round)
    assert score[1] > score[0] and score_any[0] > score_any[1]
    # the mean never exceeds the max: an image certain under `any` is certain under `mean`
    rng = np.random.default_rng(0).random((500, 14)) * 0.2
    assert not (image_uncertainty(rng, "mean")[1] & ~image_uncertainty(rng, "any")[1]).any()
    assert image_uncertainty(std[0], "any", threshold=0.6)[1] == False  # noqa: E712 (np.bool_)
    with pytest.raises(ValueError, match="not one of mean, any"):
        image_uncertainty(std, "median")


def test_rule_for_prefers_the_request_then_the_checkpoint_and_says_when_defaulted():
    assert UNCERTAINTY_RULES == ("mean", "any") and UNCERTAIN_STD == 0.1
    assert rule_for({"config": {"uncertainty_rule": "any"}}) == ("any", "the checkpoint's config")
    assert rule_for({"config": {"uncertainty_rule": "any"}}, "mean")[0] == "mean"
    rule, origin = rule_for({"config": {"mc_passes": 25}})  # saved before the setting existed
    assert rule == "mean" and "predates the uncertainty_rule setting" in origin
    with pytest.raises(ValueError, match="'max'"):
        rule_for({}, "max")
    assert describe_rule("mean", 0.1) == \
        "mean (uncertain when the mean MC-dropout std over the findings > 0.1)"
    assert describe_rule("any", 0.2) == "any (uncertain when some finding's MC-dropout std > 0.2)"


# -- per-film dropout noise ----------------------------------------------------------------------

class PointwiseCNN(CXRModel):
    """Features that are exactly the same for a film in any batch (no conv, whose rounding
    depends on the batch size) and a two-dropout head."""

    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(16, 14))
        self.gradcam_layer = nn.Identity()
        self._set_meta(dict(num_classes=14), 8, False)

    def forward_features(self, x):
        return x * 3.0


def test_a_films_noise_is_its_own_in_any_batch_and_order():
    torch.manual_seed(0)
    model = PointwiseCNN()
    x = torch.randn(4, 3, 8, 8)
    names = ["a.png", "b.png", "c.png", "d.png"]
    state = torch.get_rng_state()
    batch = mc_predict(model, x, passes=9, film_seeds=film_seeds_for(0, names))
    assert torch.equal(torch.get_rng_state(), state)
    for i, name in enumerate(names):
        alone = mc_predict(model, x[i:i + 1], passes=9, film_seeds=film_seeds_for(0, [name]))
        np.testing.assert_array_equal(alone.samples[:, 0], batch.samples[:, i])  # bit for bit
    order = [2, 0, 3, 1]
    shuffled = mc_predict(model, x[order], passes=9,
                          film_seeds=film_seeds_for(0, [names[i] for i in order]))
    np.testing.assert_array_equal(shuffled.samples, batch.samples[:, order])
    assert batch.std.min() > 0  # dropout really sampled
    other_seed = mc_predict(model, x, passes=9, film_seeds=film_seeds_for(1, names))
    assert not np.array_equal(other_seed.samples, batch.samples)
    # the same film under another name draws other masks
    renamed = mc_predict(model, x[:1], passes=9, film_seeds=film_seeds_for(0, ["z.png"]))
    assert not np.array_equal(renamed.samples[:, 0], batch.samples[:, 0])


def test_sample_head_per_film_on_real_pooled_features(simple):
    pooled = simple.pool_features(simple.forward_features(torch.randn(4, 3, 32, 32)))
    seeds = film_seeds_for(3, ["w", "x", "y", "z"])
    together = sample_head(simple, pooled, 7, film_seeds=seeds)
    assert together.shape == (7, 4, 14)
    for i in range(4):
        assert torch.equal(sample_head(simple, pooled[i:i + 1], 7, film_seeds=seeds[i:i + 1])[:, 0],
                           together[:, i])
    with pytest.raises(ValueError, match="not both"):
        sample_head(simple, pooled, 7, seed=0, film_seeds=seeds)
    with pytest.raises(ValueError, match="3 film seeds for 4 films"):
        sample_head(simple, pooled, 7, film_seeds=seeds[:3])


def test_film_seed_is_stable_across_processes():
    """Python's hash() is salted per process; the film seed must not be."""
    code = "from cxr.uncertainty import film_seed; print(film_seed(0, '00000001_000.png'))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout.strip()
            for h in (1, 2)}
    assert seen == {str(film_seed(0, "00000001_000.png"))}
    assert film_seed(0, "a") != film_seed(1, "a") != film_seed(1, "b")
    assert 0 <= film_seed(2**40, "x" * 1000) < 2**63


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

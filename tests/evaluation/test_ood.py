"""cxr/evaluation/ood.py: the Mahalanobis (LedoitWolf) score separates shifted films from films
of the demo generator; its conformal threshold flags fresh in-distribution films at the rate
(and within the interval) it promises, pooling the training films' leave-one-out scores only
when they look like the validation films'."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxr.evaluation.ood import (fit_ood, leave_one_out_scores, ood_score, pooled_features,
                              subsample)

SIZE = 32


def _write(folder, name, pixels) -> dict:
    path = folder / name
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return {"image": name, "path": str(path)}


def _photo_like(rng, size=SIZE) -> np.ndarray:
    """Smooth blobs and hard-edged rectangles: a natural-image texture, not a chest."""
    small = rng.random((6, 6))
    img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size),
                                                                            Image.BICUBIC), float)
    for _ in range(4):
        x, y, w, h = rng.integers(0, size - 8, 4)
        img[y:y + h // 2 + 4, x:x + w // 2 + 4] = rng.integers(0, 256)
    return np.clip(img, 0, 255)


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Tables of demo-generator films (train, val, test) and of three shifted sets made from
    the test films: inverted, pure noise, photo-like texture."""
    from cxr.synth.plan import plan_films
    from cxr.synth.render import make_case, render_film

    folder = tmp_path_factory.mktemp("ood")
    rng = np.random.default_rng(0)
    demo = [render_film(make_case(f, 0), SIZE) for f in plan_films(40, 0)[:80]]
    rows = [_write(folder, f"demo_{i:03d}.png", px) for i, px in enumerate(demo)]
    test = demo[65:]
    shifted = {
        "inverted": [255 - px for px in test],
        "noise": [rng.integers(0, 256, (SIZE, SIZE)) for _ in test],
        "photo": [_photo_like(rng) for _ in test]}
    tables = {"train": pd.DataFrame(rows[:50]), "val": pd.DataFrame(rows[50:65]),
              "test": pd.DataFrame(rows[65:])}
    for kind, images in shifted.items():
        tables[kind] = pd.DataFrame([_write(folder, f"{kind}_{i:03d}.png", px)
                                     for i, px in enumerate(images)])
    return tables


@pytest.fixture(scope="module")
def model():
    from cxr.models import create_model
    torch.manual_seed(0)
    return create_model("simple_cnn", input_size=SIZE, hidden=16).eval()


def test_score_separates_shifted_films_from_demo_films(films, model):
    feats = {k: pooled_features(model, t, batch_size=16) for k, t in films.items()}
    ood = fit_ood(feats["train"], feats["val"], share=0.95)
    inside = ood_score(feats["test"], ood.mean, ood.precision)
    for kind in ("inverted", "noise", "photo"):
        outside = ood_score(feats[kind], ood.mean, ood.precision)
        y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
        auroc = roc_auc_score(y, np.r_[inside, outside])
        assert auroc > 0.9, (kind, auroc)
        assert (outside > ood.threshold).mean() > 0.5, kind  # most flagged at the threshold


def test_validation_only_threshold_is_the_conformal_rank():
    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(300, 20)), rng.normal(size=(200, 20))
    for share, k in ((0.9, 181), (0.95, 191)):  # k = ceil(201 * share)
        ood = fit_ood(train, val, share, pool_train=False)
        scores = np.sort(ood_score(val, ood.mean, ood.precision))
        assert ood.threshold == scores[k - 1] and ood.method == "conformal"
        assert (scores <= ood.threshold).mean() == k / 200 and ood.share == share
        assert ood.n_calibration == 200 and ood.expected_flag_rate == (201 - k) / 201
        assert not ood.calibration["pooled"]
    assert 0 <= ood.shrinkage <= 1
    with pytest.raises(ValueError, match="--ood-share 1.5"):
        fit_ood(train, val, 1.5)
    with pytest.raises(ValueError, match="at least 2 training"):
        fit_ood(train[:1], val)


def _gaussian(rng, n, dim=32, shift=0.0, scale=1.0):
    """A known in-distribution law: N(0, D) with a fixed diagonal D, rotated (seeded)."""
    basis = np.linalg.qr(np.random.default_rng(99).normal(size=(dim, dim)))[0]
    sd = np.linspace(0.5, 2.0, dim)
    return (rng.normal(size=(n, dim)) * sd * scale + shift) @ basis


@pytest.mark.parametrize("pool_train", [True, False])
def test_fresh_in_distribution_films_are_flagged_at_the_promised_rate(pool_train):
    rng = np.random.default_rng(7)
    train, val = _gaussian(rng, 1500), _gaussian(rng, 216)
    ood = fit_ood(train, val, 0.95, pool_train=pool_train)
    assert ood.calibration["pooled"] == pool_train, ood.calibration["note"]
    assert ood.n_calibration == (1716 if pool_train else 216)
    lo, hi = ood.flag_rate_interval
    assert lo < ood.expected_flag_rate <= 0.05 < hi
    fresh = ood_score(_gaussian(rng, 40_000), ood.mean, ood.precision)
    observed = (fresh > ood.threshold).mean()
    assert lo <= observed <= hi, (observed, lo, hi)
    shifted = ood_score(_gaussian(rng, 2000, shift=2.0), ood.mean, ood.precision)
    assert (shifted > ood.threshold).mean() > 0.95  # a clearly shifted set is still flagged
    if pool_train:  # more films, a narrower promise than the validation films' alone
        alone = fit_ood(train, val, 0.95, pool_train=False).flag_rate_interval
        assert hi - lo < 0.5 * (alone[1] - alone[0])


def test_training_scores_unlike_the_validation_ones_are_not_pooled_and_it_is_said():
    rng = np.random.default_rng(8)
    train, val = _gaussian(rng, 1500), _gaussian(rng, 216, scale=1.2)  # validation wider
    ood = fit_ood(train, val, 0.95)
    info = ood.calibration
    assert not info["pooled"] and info["ks_p"] < 0.05 and ood.n_calibration == 216
    assert "validation films only" in info["note"] and "KS p" in info["note"]


def test_too_few_calibration_films_use_the_largest_score_and_promise_nothing():
    rng = np.random.default_rng(9)
    ood = fit_ood(_gaussian(rng, 50), _gaussian(rng, 10), 0.95, pool_train=False)
    val_max = ood_score(_gaussian(np.random.default_rng(9), 60)[50:], ood.mean,
                        ood.precision).max()
    assert ood.method == "max_score" and ood.threshold == pytest.approx(val_max)
    assert ood.expected_flag_rate is None and ood.flag_rate_interval is None
    assert "too few for a conformal threshold" in ood.calibration["note"]


def test_leave_one_out_scores_equal_refits_without_each_film():
    from sklearn.covariance import LedoitWolf
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 5)) @ rng.normal(size=(5, 5))
    s = LedoitWolf().fit(x).shrinkage_
    mu = np.trace(np.cov(x.T, bias=True)) / 5  # the full fit's trace target, as documented
    expected = []
    for i in range(len(x)):
        rest = np.delete(x, i, axis=0)
        cov = (1 - s) * np.cov(rest.T, bias=True) + s * mu * np.eye(5)
        d = x[i] - rest.mean(axis=0)
        expected.append(np.sqrt(d @ np.linalg.inv(cov) @ d))
    np.testing.assert_allclose(leave_one_out_scores(x, s), expected, rtol=1e-10)


def test_score_is_the_mahalanobis_distance():
    rng = np.random.default_rng(2)
    f, mean = rng.normal(size=(5, 3)), rng.normal(size=3)
    a = rng.normal(size=(3, 3))
    precision = a @ a.T + np.eye(3)
    expected = [np.sqrt((x - mean) @ precision @ (x - mean)) for x in f]
    np.testing.assert_allclose(ood_score(f, mean, precision), expected)


def test_pooled_features_are_the_classifier_input_and_leave_the_mode_alone(films, model):
    from cxr.data.dataset import CXRDataset
    from cxr.data.transforms import build_transform

    table = films["val"].iloc[:5]
    model.train()
    feats = pooled_features(model, table, batch_size=2)
    assert model.training  # restored
    model.eval()
    ds = CXRDataset(table, build_transform(model.preprocess, train=False))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        direct = model.pool_features(model.forward_features(x)).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)


def test_subsample_is_seeded_sorted_and_capped():
    assert subsample(10, cap=20).tolist() == list(range(10))
    a, b = subsample(1000, cap=50, seed=3), subsample(1000, cap=50, seed=3)
    assert a.tolist() == b.tolist() and len(set(a)) == 50 and (np.diff(a) > 0).all()
    assert subsample(1000, cap=50, seed=4).tolist() != a.tolist()

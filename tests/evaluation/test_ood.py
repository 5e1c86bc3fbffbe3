"""cxr/evaluation/ood.py: the Mahalanobis (LedoitWolf) score separates shifted films from films
of the demo generator, and its threshold keeps the stated share of validation films inside."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxr.evaluation.ood import fit_ood, ood_score, pooled_features, subsample

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


def test_threshold_keeps_the_share_of_validation_films_inside():
    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(300, 20)), rng.normal(size=(200, 20))
    for share in (0.9, 0.95):
        ood = fit_ood(train, val, share)
        inside = (ood_score(val, ood.mean, ood.precision) <= ood.threshold).mean()
        assert inside == pytest.approx(share, abs=0.01) and ood.share == share
    assert 0 <= ood.shrinkage <= 1
    with pytest.raises(ValueError, match="--ood-share 1.5"):
        fit_ood(train, val, 1.5)
    with pytest.raises(ValueError, match="at least 2 training"):
        fit_ood(train[:1], val)


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

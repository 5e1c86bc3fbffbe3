"""cxr/inference_speed.py: InferenceModel gives the plain model's probabilities, stds and
Grad-CAMs (within 1e-4), runs the backbone once per film, and a new film gets new features."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from cxr.dashboard import analysis
from cxr.inference_speed import InferenceModel, pick_backend
from cxr.models import create_model

SIZE = 64
FINDINGS = ["Effusion", "Mass", "Cardiomegaly"]


@functools.lru_cache(maxsize=None)  # one export per model: a few seconds each
def pair(name: str) -> tuple[torch.nn.Module, InferenceModel]:
    """(plain model, its ONNX Runtime InferenceModel); fusion with its attention switched on."""
    torch.manual_seed(0)
    if name == "fusion":
        model = create_model("fusion", input_size=SIZE, dim=32).eval()
        with torch.no_grad():
            model.attention.gamma.fill_(0.5)
    else:
        model = create_model(name, input_size=SIZE).eval()
    return model, InferenceModel(model)


def film(seed: int) -> np.ndarray:
    """A smooth random grey film, larger than the input size (the transform resizes it)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((12, 12)).astype(np.float32)
    return np.kron(coarse, np.ones((8, 8), np.float32))  # 96x96 in [0, 1]


@pytest.mark.parametrize("name", ["fusion", "efficientnet_b0"])
def test_outputs_equal_the_plain_torch_path(name):
    model, fast = pair(name)
    assert fast.backend == "onnxruntime"
    pixels = film(1)
    slow = analysis.analyse(model, pixels, passes=25)
    ours = analysis.analyse(fast, pixels, passes=25)
    assert slow.std.max() > 0  # dropout was on: the stds compared are not all zero
    np.testing.assert_allclose(ours.samples, slow.samples, atol=1e-4)
    np.testing.assert_allclose(ours.mean, slow.mean, atol=1e-4)
    np.testing.assert_allclose(ours.std, slow.std, atol=1e-4)
    slow_cams = analysis.explain(model, pixels, FINDINGS)
    cams = analysis.explain(fast, pixels, FINDINGS)
    assert any(m.max() > 0 for m in slow_cams.values())
    for f in FINDINGS:
        assert cams[f].shape == slow_cams[f].shape == (SIZE, SIZE)
        np.testing.assert_allclose(cams[f], slow_cams[f], atol=1e-4)
    x = analysis.to_input(model, pixels)[None]
    with torch.no_grad():
        np.testing.assert_allclose(fast.forward_features(x), model.forward_features(x),
                                   atol=1e-4)
    assert not any(m.training for m in fast.modules())  # modes restored by mc_predict
    assert all(p.grad is None for p in fast.parameters())  # and by cam_maps


def counting(fast: InferenceModel, monkeypatch) -> list:
    calls = []
    compute = fast._compute
    monkeypatch.setattr(fast, "_compute", lambda x: calls.append(x.shape) or compute(x))
    return calls


def test_one_backbone_pass_per_film_and_a_new_film_gets_new_features(monkeypatch):
    model, fast = pair("fusion")
    calls = counting(fast, monkeypatch)
    a, b = film(10), film(11)
    analysis.analyse(fast, a, passes=5)
    analysis.explain(fast, a, FINDINGS)
    analysis.explain(fast, a, ["Nodule"])  # a finding added later on the page
    assert len(calls) == 1
    xa, xb = (analysis.to_input(model, p)[None] for p in (a, b))
    fa, fb = fast.forward_features(xa), fast.forward_features(xb)
    assert len(calls) == 2  # film b ran the backbone; film a came from the cache
    with torch.no_grad():
        np.testing.assert_allclose(fb, model.forward_features(xb), atol=1e-4)
        np.testing.assert_allclose(fa, model.forward_features(xa), atol=1e-4)
    assert not torch.allclose(fa, fb)
    assert not np.allclose(analysis.analyse(fast, a, passes=5).mean,
                           analysis.analyse(fast, b, passes=5).mean)
    kept = fa.clone()
    fa.add_(1.0)  # a caller changing what it got does not change the cache
    np.testing.assert_array_equal(fast.forward_features(xa), kept)


def test_the_cache_is_bounded_and_the_torch_backend_caches_too(monkeypatch):
    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=SIZE).eval()
    fast = InferenceModel(model, backend="torch", cache_films=2)
    calls = counting(fast, monkeypatch)
    xs = [analysis.to_input(model, film(s))[None] for s in (20, 21, 22)]
    for x in xs + xs[2:]:
        with torch.no_grad():
            np.testing.assert_array_equal(fast.forward_features(x), model.forward_features(x))
    assert len(calls) == 3  # the third film again: kept
    fast.forward_features(xs[0])
    assert len(calls) == 4  # the first film was evicted by the third


def test_refuses_train_mode_wrong_sizes_and_unknown_backends():
    model, fast = pair("fusion")
    with pytest.raises(ValueError, match=rf"\(B, 3, {SIZE}, {SIZE}\).*\(1, 3, 32, 32\)"):
        fast.forward_features(torch.zeros(1, 3, 32, 32))
    fast.train()
    try:
        with pytest.raises(RuntimeError, match="call .eval"):
            fast.forward_features(torch.zeros(1, 3, SIZE, SIZE))
    finally:
        fast.eval()
    assert pick_backend(model) == "onnxruntime" and pick_backend(model, "torch") == "torch"
    with pytest.raises(ValueError, match="tensorrt"):
        pick_backend(model, "tensorrt")
    assert fast.labels == model.labels and fast.preprocess == model.preprocess

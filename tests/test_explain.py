"""cxr/explain.py: Grad-CAM maps (size, range, finiteness, state restored), overlay, pointing
game."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cxr.explain import box_mask, cam_maps, overlay, pointing_game
from cxr.labels import FINDINGS
from cxr.models import create_model


@pytest.fixture(scope="module")
def simple():
    torch.manual_seed(0)
    return create_model("simple_cnn", input_size=64).eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_simple_cnn_maps_have_input_size_and_are_finite(simple, method):
    x = torch.randn(2, 3, 64, 64)
    maps = cam_maps(simple, x, ["Effusion", "Infiltrate"], method=method)
    assert set(maps) == {"Effusion", "Infiltrate"}
    for m in maps.values():
        assert m.shape == (2, 64, 64) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0
    one = cam_maps(simple, x[0], ["Mass"], size=(100, 80))["Mass"]  # e.g. the film's size
    assert one.shape == (100, 80) and np.isfinite(one).all()


@functools.lru_cache(maxsize=None)  # built once per name: cam_maps restores what it changes
def tiny_fusion(name: str):
    """fusion (gate opened, so attention acts) or fusion_xattn, with narrow fused maps (64 ch)."""
    torch.manual_seed(0)
    if name == "fusion":
        model = create_model("fusion", input_size=64, dim=32).eval()
        with torch.no_grad():
            model.attention.gamma.fill_(0.5)
        return model
    return create_model("fusion_xattn", input_size=64, dim=32, heads=2).eval()


@pytest.mark.parametrize("name, layer", [("fusion", "attention"), ("fusion_xattn", "fusion")])
def test_fusion_maps_come_from_the_fused_layer(name, layer):
    model = tiny_fusion(name)
    assert model.gradcam_layer is getattr(model, layer)
    seen = []
    hook = model.gradcam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    maps = cam_maps(model, torch.randn(3, 64, 64), ["Cardiomegaly"])
    hook.remove()
    assert seen and seen[0][1] == 64  # the fused map (2 x dim channels) was the target
    m = maps["Cardiomegaly"]
    assert m.shape == (64, 64) and np.isfinite(m).all() and 0.0 <= m.min() <= m.max() <= 1.0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_head_only_maps_equal_grad_cam_through_the_whole_model(method):
    """cam_maps runs the backbones once without autograd; pytorch-grad-cam hooked on the
    fused layer of the full model (back-propagating through both backbones) is the reference."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = tiny_fusion("fusion")
    x = torch.randn(2, 3, 64, 64)
    findings = ["Effusion", "Mass", "Nodule"]
    ours = cam_maps(model, x, findings, method=method)
    reference = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}[method](
        model, [model.gradcam_layer])
    try:
        for f in findings:
            full = reference(x, [ClassifierOutputTarget(FINDINGS.index(f))] * 2)
            assert ours[f].shape == full.shape == (2, 64, 64)
            np.testing.assert_allclose(ours[f], full, atol=1e-4)
    finally:
        reference.activations_and_grads.release()
    assert any(m.max() > 0 for m in ours.values())


def test_frozen_no_grad_model_in_train_mode_gives_same_maps_and_is_restored(simple):
    torch.manual_seed(1)
    x = torch.randn(3, 64, 64)
    reference = cam_maps(simple, x, FINDINGS)
    assert any(m.max() > 0 for m in reference.values())
    for p in simple.parameters():
        p.requires_grad_(False)
    simple.train()
    try:
        with torch.no_grad():  # as a Streamlit page might call it
            frozen = cam_maps(simple, x, FINDINGS)
        for f in FINDINGS:  # gradients flowed (from the input) and dropout was off
            np.testing.assert_allclose(frozen[f], reference[f], atol=1e-6)
        assert simple.training  # pytorch-grad-cam switched it to eval; we switched it back
        assert all(p.grad is None for p in simple.parameters())
        assert not any(m._forward_hooks for m in simple.modules())  # hooks removed
    finally:
        for p in simple.parameters():
            p.requires_grad_(True)
        simple.eval()


def test_overlay_is_rgb_uint8_of_film_size():
    film = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    cam = np.zeros((8, 8), np.float32)
    cam[0, 0] = 1.0
    out = overlay(film, cam, opacity=0.5)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    plain = overlay(film, cam, opacity=0.0)
    assert (plain[..., 0] == plain[..., 2]).all()  # grey film alone
    assert not (out[..., 0] == out[..., 2]).all()  # colour where the heat is
    with pytest.raises(ValueError, match="opacity"):
        overlay(film, cam, opacity=1.5)


@pytest.mark.parametrize("opacity", [0.0, 0.05, 0.4, 1.0])
def test_overlay_is_pytorch_grad_cams_blend_to_the_bit(opacity):
    """overlay blends in place, the grey film broadcast; the reference is the library's
    show_cam_on_image on the film copied to RGB (what overlay called before)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image
    rng = np.random.default_rng(0)
    film = rng.random((130, 97)).astype(np.float32)
    cam = rng.random((14, 14)).astype(np.float32)
    heat = cv2.resize(cam, (97, 130), interpolation=cv2.INTER_LINEAR).clip(0, 1)
    rgb = np.repeat(film[:, :, None], 3, axis=2)
    expected = (np.round(rgb * 255).astype(np.uint8) if opacity == 0.0 else
                show_cam_on_image(rgb, heat, use_rgb=True, image_weight=1.0 - opacity))
    np.testing.assert_array_equal(overlay(film, cam, opacity), expected)


def test_box_mask_scales_original_pixels_to_grid():
    mask = box_mask([(512, 0, 512, 256)], (1024, 1024), 8)  # right half, top quarter
    expected = np.zeros((8, 8), bool)
    expected[:2, 4:] = True
    assert (mask == expected).all()
    tiny = box_mask([(100, 900, 2, 2)], (1024, 1024), 8)  # smaller than a cell
    assert tiny.sum() == 1 and tiny[7, 0]


class _Masks(nn.Module):
    """Channel k = the image times finding k's mask (Mass: top right, Nodule: bottom left)."""

    def __init__(self, size):
        super().__init__()
        masks = torch.zeros(14, size, size)
        masks[FINDINGS.index("Mass"), 0:8, size - 8:] = 1.0
        masks[FINDINGS.index("Nodule"), size - 8:, 0:8] = 1.0
        self.register_buffer("masks", masks)

    def forward(self, x):
        return x[:, :1] * self.masks[None]


class _Spot(nn.Module):
    """Logit k = mean of channel k: its Grad-CAM is finding k's mask, so the pointing game's
    answer is known in advance."""

    labels = FINDINGS

    def __init__(self, size=32):
        super().__init__()
        self.gradcam_layer = _Masks(size)
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, x):  # the model API cam_maps relies on (cxr/models/base.py)
        return self.gradcam_layer(x * self.scale)

    def forward_head(self, f):
        return f.mean(dim=(2, 3))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_pointing_game_hits_and_misses_as_constructed():
    model = _Spot().eval()
    x = torch.ones(3, 32, 32)
    boxes = {
        "a.png": [("Mass", 700, 0, 300, 200), ("Nodule", 0, 768, 256, 256)],  # both right
        "b.png": [("Mass", 0, 0, 200, 200)],                                 # wrong corner
        "c.png": [("Effusion", 0, 0, 10, 10)],                               # not asked for
    }
    images = [(x, "a.png", (1024, 1024)), (x, "b.png", (1024, 1024)),
              (x, "c.png", (1024, 1024)), (x, "unboxed.png", (1024, 1024))]
    result = pointing_game(model, images, boxes, 32, findings=["Mass", "Nodule"])
    assert set(result) == {"Mass", "Nodule"}
    assert result["Mass"]["hits"] == 1 and result["Mass"]["n"] == 2
    assert result["Mass"]["hit_rate"] == 0.5
    assert result["Nodule"] == {"hits": 1, "n": 1, "hit_rate": 1.0,
                                "random_baseline": pytest.approx(
                                    box_mask([(0, 768, 256, 256)], (1024, 1024), 32).mean())}
    a = box_mask([(700, 0, 300, 200)], (1024, 1024), 32).mean()
    b = box_mask([(0, 0, 200, 200)], (1024, 1024), 32).mean()
    assert result["Mass"]["random_baseline"] == pytest.approx((a + b) / 2)
    with pytest.raises(ValueError, match="expected 3x64x64"):
        pointing_game(model, images, boxes, 64)

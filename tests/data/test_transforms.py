"""cxr/data/transforms.py: own RNG, reproducible, each augmentation does what its name says."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, EvalTransform,
                                 TrainTransform, build_transform, resize_to_uint8)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/data/: image_moments
from image_moments import orientation  # noqa: E402

S = 32
IMG = np.random.default_rng(0).random((40, 48), dtype=np.float32)  # not square, not S
IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # outputs stay in pixel units
NO_AUG = AugmentConfig(hflip=0, rotation=0, zoom=0, brightness=0)


def only(**amounts) -> AugmentConfig:
    return AugmentConfig(**{**vars(NO_AUG), **amounts})


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("transform", [TrainTransform(S), EvalTransform(S)])
def test_output_is_3xSxS_float32(transform):
    out = transform(IMG, rng())
    assert out.shape == (3, S, S) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.isfinite(out).all()


def test_train_same_seed_same_output_whatever_global_seeds():
    t = TrainTransform(S)
    np.random.seed(1), torch.manual_seed(1)
    a = t(IMG, rng(7))
    np.random.seed(2), torch.manual_seed(2)
    b = t(IMG, rng(7))
    assert torch.equal(a, b)
    assert not torch.allclose(a, t(IMG, rng(8)))


def test_train_requires_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        TrainTransform(S)(IMG, None)


def test_eval_is_deterministic_and_ignores_rng():
    t = EvalTransform(S)
    assert torch.equal(t(IMG, None), t(IMG, rng(1))) and torch.equal(t(IMG), t(IMG, rng(2)))


def test_normalisation_by_mean_and_std_on_replicated_grey():
    out = EvalTransform(S)(np.full((40, 48), 0.6, np.float32))
    for c in range(3):
        expected = (0.6 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((S, S), expected), atol=1e-5)


def test_no_augmentation_equals_eval():
    assert torch.equal(TrainTransform(S, augment=NO_AUG)(IMG, rng()), EvalTransform(S)(IMG))


def test_forced_hflip_flips():
    flipped = TrainTransform(S, augment=only(hflip=1.0))(IMG, rng())
    assert torch.equal(flipped, EvalTransform(S)(IMG).flip(-1))


def test_rotation_uses_keras_fraction_of_a_turn():
    t = TrainTransform(S, augment=only(rotation=0.1))
    angles = np.array([t.draw(rng(s))["angle"] for s in range(400)])
    assert angles.min() >= -36.0 and angles.max() <= 36.0  # 0.1 * 360 degrees
    assert angles.min() < -30 and angles.max() > 30  # the whole range is used


def test_rotation_rotates_by_the_drawn_angle():
    bar = np.zeros((64, 64), np.float32)
    bar[31:33, 12:52] = 1.0  # horizontal bar through the centre
    t = TrainTransform(64, **IDENTITY, augment=only(rotation=0.1))
    for seed in range(4):
        angle = t.draw(rng(seed))["angle"]
        out = t(bar, rng(seed))[0].numpy()
        assert abs(orientation(out) - angle) < 1.5


def test_zoom_scales_area():
    yy, xx = np.mgrid[:64, :64]
    disk = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 12 ** 2).astype(np.float32)
    t = TrainTransform(64, **IDENTITY, augment=only(zoom=0.3))
    for seed in range(4):
        scale = t.draw(rng(seed))["scale"]
        assert 0.7 <= scale <= 1.3
        area = t(disk, rng(seed))[0].numpy().sum()
        assert area / disk.sum() == pytest.approx(scale ** 2, rel=0.05)


def test_brightness_adds_a_bounded_delta():
    flat = np.full((40, 48), 0.5, np.float32)
    t = TrainTransform(S, **IDENTITY, augment=only(brightness=0.1))
    deltas = []
    for seed in range(50):
        out = t(flat, rng(seed))
        delta = t.draw(rng(seed))["brightness"]
        assert torch.allclose(out, torch.full_like(out, 0.5 + delta), atol=1e-6)
        deltas.append(delta)
    assert max(np.abs(deltas)) <= 0.1 and min(deltas) < -0.05 and max(deltas) > 0.05


def test_output_pixels_are_clipped_to_valid_range():
    out = TrainTransform(S, **IDENTITY, augment=only(brightness=1.0))(np.ones((8, 8), np.float32),
                                                                      rng(3))
    assert out.max() <= 1.0 and out.min() >= 0.0


def test_switching_one_augmentation_off_keeps_the_other_draws():
    a = TrainTransform(S, augment=AugmentConfig()).draw(rng(5))
    b = TrainTransform(S, augment=AugmentConfig(rotation=0.0)).draw(rng(5))
    assert b["angle"] == 0.0 and a["flip"] == b["flip"]
    assert a["scale"] == b["scale"] and a["brightness"] == b["brightness"]


def test_input_is_not_modified():
    before = IMG.copy()
    TrainTransform(S, augment=AugmentConfig(brightness=1.0))(IMG, rng())
    assert np.array_equal(IMG, before)


@pytest.mark.parametrize("bad", [dict(hflip=1.5), dict(rotation=-0.1), dict(zoom=1.0)])
def test_augment_config_rejects_bad_amounts(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        AugmentConfig(**bad)


def test_rejects_non_greyscale_input():
    with pytest.raises(ValueError, match="HxW"):
        EvalTransform(S)(np.zeros((8, 8, 3), np.float32))


def test_build_transform_from_model_preprocess():
    pre = {"input_size": 24, "mean": [0.5] * 3, "std": [0.25] * 3}
    t = build_transform(pre, train=False)
    assert isinstance(t, EvalTransform) and t(IMG).shape == (3, 24, 24)
    assert torch.allclose(t(np.full((8, 8), 0.75, np.float32)), torch.ones(3, 24, 24))
    assert isinstance(build_transform(pre, train=True), TrainTransform)


def test_resize_to_uint8_is_the_eval_resize_rounded():
    out = resize_to_uint8(IMG, 16)  # what `cxr prepare` stores
    assert out.shape == (16, 16) and out.dtype == np.uint8
    resized = EvalTransform(16, **IDENTITY)(IMG)[0].numpy()
    assert np.abs(out / 255.0 - resized).max() <= 0.5 / 255 + 1e-6


def test_the_defaults_are_the_reports_keras_layers():
    """Flip p 0.5, RandomRotation(0.1) (a tenth of a turn), RandomZoom(0.1),
    RandomBrightness(0.1), and Keras' fill_mode="reflect"; TrainConfig takes the same."""
    from cxr.train.config import TrainConfig
    keys = ("hflip", "rotation", "zoom", "brightness", "fill_mode")
    report = (0.5, 0.1, 0.1, 0.1, "reflect")
    assert tuple(getattr(AugmentConfig(), k) for k in keys) == report
    assert tuple(getattr(TrainConfig(), k) for k in keys) == report
    assert TrainTransform(S).augment == AugmentConfig()


@pytest.mark.parametrize("fill, corner", [("reflect", 1.0), ("black", 0.0)])
def test_rotation_fills_what_it_uncovers_by_fill_mode(fill, corner):
    white = np.ones((S, S), np.float32)
    t = TrainTransform(S, **IDENTITY, augment=only(rotation=0.1, fill_mode=fill))
    seed = next(s for s in range(50) if abs(t.draw(rng(s))["angle"]) > 20)
    out = t(white, rng(seed))[0].numpy()
    assert out[S // 2, S // 2] == pytest.approx(1.0, abs=1e-5)
    for corner_value in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert corner_value == pytest.approx(corner, abs=1e-5)


def test_an_unknown_fill_mode_is_refused():
    with pytest.raises(ValueError, match="fill_mode"):
        AugmentConfig(fill_mode="wrap")

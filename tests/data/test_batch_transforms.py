"""cxr/data/batch_transforms.py: the batched augmentation is TrainTransform's, sample by sample
(CPU tensors here; the same code runs on CUDA)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.data.batch_transforms import PARAMS, BatchTransform, params_tensor
from cxr.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, EvalTransform,
                                 TrainTransform)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/data/: image_moments
from image_moments import orientation  # noqa: E402

S0, S = 40, 32  # the cache's side, the model's: the batch is resized like the CPU path
IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # outputs stay in pixel units
NO_CHANGE = (0.0, 0.0, 1.0, 0.0)  # flip, angle, scale, brightness


def smooth_images(n: int, size: int = S0) -> np.ndarray:
    """uint8 (n, size, size) as the cache holds them; different per sample."""
    yy, xx = np.mgrid[:size, :size]
    return np.stack([np.rint(255 * (0.5 + 0.4 * np.sin(xx / 5 + i) * np.cos(yy / 3 - i)))
                     .astype(np.uint8) for i in range(n)])


def unit(image_u8: np.ndarray) -> np.ndarray:
    return image_u8.astype(np.float32) * np.float32(1.0 / 255.0)  # ImageCache.get


def sample_rng(index: int, seed: int = 0, epoch: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])  # CXRDataset.rng


def drawn(transform: TrainTransform, n: int, epoch: int = 0) -> torch.Tensor:
    return torch.stack([params_tensor(transform.draw(sample_rng(i, epoch=epoch)))
                        for i in range(n)])


def fixed(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_output_shape_dtype_and_imagenet_normalisation():
    flat = np.full((3, S0, S0), 153, np.uint8)  # 153 / 255 = 0.6
    out = BatchTransform(S)(torch.from_numpy(flat), fixed(*[NO_CHANGE] * 3))
    assert out.shape == (3, 3, S, S) and out.dtype == torch.float32 and out.is_contiguous()
    for c in range(3):
        expected = (0.6 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(out[:, c], torch.full((3, S, S), expected), atol=1e-5, rtol=0)


def test_identity_parameters_give_the_eval_transform():
    # At 100 px (not a power of two) an identity warp would move pixels by rounding, visible
    # on noise (up to 4e-5 after normalising): angle 0 and scale 1 must not be resampled.
    images = np.random.default_rng(0).integers(0, 256, (4, 120, 120), dtype=np.uint8)
    out = BatchTransform(100)(torch.from_numpy(images), fixed(*[NO_CHANGE] * 4))
    expected = torch.stack([EvalTransform(100)(unit(im)) for im in images])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_every_sample_is_bitwise_the_per_image_transform_on_cpu():
    """The documented claim: same parameters, same operations, same bits (CPU)."""
    images = smooth_images(6)
    train = TrainTransform(S, augment=AugmentConfig(hflip=0.5, rotation=0.1, zoom=0.2,
                                                    brightness=0.2))
    out = BatchTransform.like(train)(torch.from_numpy(images), drawn(train, 6))
    for i, image in enumerate(images):
        assert torch.equal(out[i], train(unit(image), sample_rng(i))), f"sample {i}"


def test_a_flip_flips_only_its_sample():
    images = torch.from_numpy(smooth_images(2))
    plain = BatchTransform(S)(images, fixed(NO_CHANGE, NO_CHANGE))
    out = BatchTransform(S)(images, fixed((1.0, 0.0, 1.0, 0.0), NO_CHANGE))
    assert torch.equal(out[0], plain[0].flip(-1)) and torch.equal(out[1], plain[1])


def test_rotation_by_the_drawn_angle_matches_the_per_image_rotation():
    bar = np.zeros((64, 64), np.uint8)
    bar[31:33, 12:52] = 255  # a horizontal bar through the centre
    train = TrainTransform(64, **IDENTITY, augment=AugmentConfig(hflip=0, rotation=0.1, zoom=0,
                                                                 brightness=0))
    params = drawn(train, 4)
    out = BatchTransform.like(train)(torch.from_numpy(np.stack([bar] * 4)), params)
    for i in range(4):
        angle = float(params[i, PARAMS.index("angle")])
        per_image = train(unit(bar), sample_rng(i))
        # 1e-6: the same operations on the same values (bitwise here, see above); the
        # tolerance only leaves room for a batched matrix product that rounds differently.
        torch.testing.assert_close(out[i], per_image, atol=1e-6, rtol=0)
        # 1.5 degrees: the orientation of a 2 px bar resampled bilinearly on a 64 px grid is
        # off by up to about a degree from the exact angle (the same bound as TrainTransform's test)
        assert abs(orientation(out[i, 0].numpy()) - angle) < 1.5
    assert params[:, PARAMS.index("angle")].abs().min() > 1.0  # really rotated


def test_brightness_shifts_the_mean_by_the_drawn_amount():
    flat = np.full((5, S0, S0), 128, np.uint8)
    train = TrainTransform(S, **IDENTITY, augment=AugmentConfig(hflip=0, rotation=0, zoom=0,
                                                                brightness=0.2))
    params = drawn(train, 5)
    out = BatchTransform.like(train)(torch.from_numpy(flat), params)
    shift = out.mean(dim=(1, 2, 3)) - 128 / 255
    torch.testing.assert_close(shift, params[:, PARAMS.index("brightness")].float(), atol=1e-6,
                               rtol=0)
    assert shift.abs().max() > 0.02  # the amounts were not all zero


def test_zoom_scales_the_area_by_the_drawn_scale():
    yy, xx = np.mgrid[:64, :64]
    disk = ((((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 12 ** 2) * 255).astype(np.uint8)
    train = TrainTransform(64, **IDENTITY, augment=AugmentConfig(hflip=0, rotation=0, zoom=0.3,
                                                                 brightness=0))
    params = drawn(train, 4)
    out = BatchTransform.like(train)(torch.from_numpy(np.stack([disk] * 4)), params)
    for i in range(4):
        scale = float(params[i, PARAMS.index("scale")])
        assert out[i, 0].sum() / (disk / 255).sum() == pytest.approx(scale ** 2, rel=0.05)


def test_same_seed_same_batch_and_parameters_differ_across_samples():
    train = TrainTransform(S)
    images = torch.from_numpy(smooth_images(8))
    a, b = drawn(train, 8), drawn(train, 8)
    assert torch.equal(BatchTransform.like(train)(images, a), BatchTransform.like(train)(images, b))
    for column in range(len(PARAMS)):
        assert len(set(a[:, column].tolist())) > 1, PARAMS[column]  # not one draw for the batch
    assert not torch.equal(a, drawn(train, 8, epoch=1))  # a new epoch, new draws


def test_a_sample_does_not_depend_on_the_rest_of_its_batch():
    train = TrainTransform(S)
    images, params = torch.from_numpy(smooth_images(5)), drawn(train, 5)
    whole = BatchTransform.like(train)(images, params)
    order = torch.tensor([3, 0, 4])
    assert torch.equal(BatchTransform.like(train)(images[order], params[order]), whole[order])
    assert torch.equal(BatchTransform.like(train)(images[2:3], params[2:3])[0], whole[2])


def test_channel_dimension_is_optional():
    images, params = torch.from_numpy(smooth_images(2)), drawn(TrainTransform(S), 2)
    with_channel = BatchTransform(S)(images[:, None], params)
    assert torch.equal(BatchTransform(S)(images, params), with_channel)


def test_transform_does_not_touch_the_global_rng_or_its_input():
    images, params = torch.from_numpy(smooth_images(3)), drawn(TrainTransform(S), 3)
    before, state = images.clone(), torch.get_rng_state()
    BatchTransform(S)(images, params)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(images, before)


def test_params_tensor_follows_PARAMS():
    p = params_tensor({"brightness": 0.05, "flip": True, "scale": 1.1, "angle": -12.5})
    assert p.dtype == torch.float64 and p.tolist() == [1.0, -12.5, 1.1, 0.05]


@pytest.mark.parametrize("images, params, error, match", [
    (torch.zeros(2, S0, S0), fixed(NO_CHANGE, NO_CHANGE), TypeError, "uint8"),
    (torch.zeros(2, 3, S0, S0, dtype=torch.uint8), fixed(NO_CHANGE, NO_CHANGE), ValueError,
     "greyscale"),
    (torch.zeros(2, S0, S0 + 1, dtype=torch.uint8), fixed(NO_CHANGE, NO_CHANGE), ValueError,
     "square"),
    (torch.zeros(2, S0, S0, dtype=torch.uint8), fixed(NO_CHANGE), ValueError, r"\(2, 4\)"),
])
def test_bad_input_is_a_clear_error(images, params, error, match):
    with pytest.raises(error, match=match):
        BatchTransform(S)(images, params)


@pytest.mark.parametrize("fill", ["reflect", "black"])
def test_each_fill_mode_is_bitwise_the_per_image_transform_on_cpu(fill):
    images = smooth_images(6)
    train = TrainTransform(S, augment=AugmentConfig(rotation=0.1, zoom=0.2, fill_mode=fill))
    batch = BatchTransform.like(train)
    assert batch.fill_mode == fill
    out = batch(torch.from_numpy(images), drawn(train, 6))
    for i, image in enumerate(images):
        assert torch.equal(out[i], train(unit(image), sample_rng(i))), f"sample {i}"


@pytest.mark.parametrize("fill, left, right", [("reflect", 50, 90), ("black", 0, 0)])
def test_zoom_out_fills_by_reflection_about_the_edge_as_keras(fill, left, right):
    """Keras fill_mode="reflect": d c b a | a b c d. Zooming an 8-column ramp (column j holds
    20 j) out to half size maps output column 0 to input position -3.5, mirrored to 2.5
    (between columns 2 and 3: 50), and column 7 to 10.5, mirrored to 4.5 (90)."""
    ramp = np.tile(np.arange(8, dtype=np.uint8) * 20, (8, 1))[None]
    out = BatchTransform(8, **IDENTITY, fill_mode=fill)(torch.from_numpy(ramp),
                                                        fixed((0.0, 0.0, 0.5, 0.0)))[0, 0]
    torch.testing.assert_close(out[:, 0], torch.full((8,), left / 255), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 7], torch.full((8,), right / 255), atol=1e-6, rtol=0)

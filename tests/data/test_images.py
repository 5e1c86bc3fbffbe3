"""cxr/data/images.py: every supported format and mode, DICOM by content, and clear errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxr.data.images import ImageLoadError, LoadedImage, check_frontal, load_image

RNG = np.random.default_rng(0)
GREY8 = (RNG.random((24, 32)) * 255).astype(np.uint8)  # not square: catches H/W swaps


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def dicom_bytes(arr, photometric="MONOCHROME2", bits=16, frames_arr=None, **elements) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PID-12345", "DX"
    for key, value in elements.items():
        setattr(ds, key, value)
    if arr is not None:
        ds.set_pixel_data(arr, photometric, bits)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# --- real NIH images ----------------------------------------------------------------------------

def test_all_56_real_nih_images_load_including_rgba(nih_dir):
    paths = sorted((nih_dir / "images").glob("*.png"))
    assert len(paths) == 56
    modes = {}
    for path in paths:
        img = load_image(path)
        assert img.pixels.shape == (1024, 1024) and img.pixels.dtype == np.float32
        assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0 and img.pixels.std() > 0.05
        modes[path.name] = img.meta["mode"]
    rgba = [name for name, mode in modes.items() if mode == "RGBA"]
    assert len(rgba) == 3 and sum(m == "L" for m in modes.values()) == 53
    # RGBA content is grey: the float image is exactly the red channel / 255.
    raw = np.asarray(Image.open(nih_dir / "images" / rgba[0]))
    assert np.array_equal(raw[..., 0], raw[..., 1]) and (raw[..., 3] == 255).all()
    np.testing.assert_allclose(load_image(nih_dir / "images" / rgba[0]).pixels,
                               raw[..., 0] / 255.0, atol=1e-6)


# --- PNG / JPEG modes ---------------------------------------------------------------------------

def test_8bit_grey_png_scaled_by_255():
    img = load_image(png_bytes(Image.fromarray(GREY8)))
    assert isinstance(img, LoadedImage) and img.meta == {"format": "PNG", "mode": "L", "bits": 8}
    np.testing.assert_allclose(img.pixels, GREY8 / 255.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P"])
def test_grey_content_in_other_modes_gives_same_pixels(mode):
    data = png_bytes(Image.fromarray(GREY8).convert(mode))
    img = load_image(data)
    assert img.meta["mode"] == mode and img.pixels.shape == GREY8.shape
    tol = 1e-7 if mode != "P" else 2 / 255  # the palette may round
    np.testing.assert_allclose(img.pixels, GREY8 / 255.0, atol=tol)


def test_16bit_png_scaled_by_bit_depth_not_max():
    dark = (np.arange(24 * 32).reshape(24, 32) * 3).astype(np.uint16)  # max 2301 of 65535
    img = load_image(png_bytes(Image.fromarray(dark)))
    assert img.meta["bits"] == 16 and img.meta["mode"].startswith("I")
    np.testing.assert_allclose(img.pixels, dark / 65535.0, rtol=1e-6)
    assert img.pixels.max() < 0.04  # a dark image stays dark


def test_jpeg_loads_close_to_source():
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    img = load_image(png_bytes(Image.fromarray(smooth), "JPEG", quality=95))
    assert img.meta["format"] == "JPEG" and img.pixels.shape == (24, 32)
    assert np.abs(img.pixels - smooth / 255.0).max() < 0.05


def test_path_bytes_and_file_object_agree(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(Image.fromarray(GREY8)))
    a = load_image(path).pixels
    b = load_image(path.read_bytes()).pixels
    with open(path, "rb") as f:
        c = load_image(f).pixels
    assert np.array_equal(a, b) and np.array_equal(a, c)


# --- DICOM --------------------------------------------------------------------------------------

RAMP12 = (np.arange(16 * 20).reshape(16, 20) * 12).astype(np.uint16)  # 0..3828, 12 bits stored


def test_dicom_detected_by_magic_not_extension(tmp_path):
    path = tmp_path / "actually_dicom.png"
    path.write_bytes(dicom_bytes(RAMP12, bits=12, ViewPosition="LL"))
    img = load_image(path)
    assert img.meta["format"] == "DICOM" and img.meta["bits"] == 12 and img.meta["view"] == "LL"
    np.testing.assert_allclose(img.pixels, RAMP12 / 4095.0, rtol=1e-6)  # by BitsStored


def test_dicom_meta_has_no_patient_identifiers():
    img = load_image(dicom_bytes(RAMP12, bits=12, ViewPosition="PA"))
    assert set(img.meta) <= {"format", "mode", "bits", "frames", "view", "modality", "body_part"}
    assert "Doe" not in repr(img.meta) and "PID-12345" not in repr(img.meta)


def test_dicom_monochrome1_is_inverted():
    mono2 = load_image(dicom_bytes(RAMP12, "MONOCHROME2", bits=12)).pixels
    mono1 = load_image(dicom_bytes(RAMP12, "MONOCHROME1", bits=12)).pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == 1.0  # stored 0 is white in MONOCHROME1


def test_dicom_window_applied():
    # Window 1000..2000 of the 12-bit range: below is black, above white, linear between.
    img = load_image(dicom_bytes(RAMP12, bits=12, WindowCenter=1500, WindowWidth=1000))
    below, above = RAMP12 < 1000, RAMP12 > 2000
    assert (img.pixels[below] == 0).all() and (img.pixels[above] == 1).all()
    inside = img.pixels[~below & ~above]
    assert 0 < inside.min() and inside.max() < 1


def test_dicom_voi_lut_sequence_applied():
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # 4096 entries, first input value 0, 16-bit output
    item.LUTData = (65535 - np.arange(4096) * 16).astype(np.uint16).tobytes()  # inverting
    img = load_image(dicom_bytes(RAMP12, bits=12, VOILUTSequence=Sequence([item])))
    # Scaled by the LUT's output depth (16 bits), not by BitsStored (12).
    np.testing.assert_allclose(img.pixels, (65535 - RAMP12 * 16) / 65535.0, atol=1e-6)


def test_dicom_rescale_does_not_change_relative_scaling():
    plain = load_image(dicom_bytes(RAMP12, bits=12)).pixels
    rescaled = load_image(dicom_bytes(RAMP12, bits=12, RescaleSlope=2, RescaleIntercept=-1024))
    np.testing.assert_allclose(rescaled.pixels, plain, atol=1e-6)


def test_dicom_without_pixel_data_is_a_clear_error():
    with pytest.raises(ImageLoadError, match=r"report\.dcm: .*no pixel data"):
        load_image(dicom_bytes(None), name="report.dcm")


def test_truncated_dicom_names_file(tmp_path):
    path = tmp_path / "cut.dcm"
    path.write_bytes(dicom_bytes(RAMP12, bits=12)[:-100])
    with pytest.raises(ImageLoadError, match="cut.dcm"):
        load_image(path)


# --- errors -------------------------------------------------------------------------------------

GOOD_PNG = png_bytes(Image.fromarray(GREY8))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"Image Index,Finding Labels\n" * 20, "not an image"),
    (GOOD_PNG[: len(GOOD_PNG) // 2], "truncated"),
    (GOOD_PNG[:-12], "truncated"),  # only IEND cut off: Pillow alone would decode this
    (png_bytes(Image.fromarray(GREY8), "JPEG")[:-200], "truncated"),
])
def test_bad_files_raise_error_naming_file(tmp_path, data, reason):
    path = tmp_path / "bad_image.png"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match=rf"bad_image\.png: .*{reason}"):
        load_image(path)


def test_corrupt_png_data():
    data = bytearray(GOOD_PNG)
    start = data.find(b"IDAT") + 100
    data[start:start + 60] = bytes(60)
    with pytest.raises(ImageLoadError, match="x.png: corrupt"):
        load_image(bytes(data), name="x.png")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.png"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "GIF", "WEBP", "ICO", "TGA", "JPEG2000", "PPM",
                                 "PCX"])
def test_pillow_opens_png_and_jpeg_only(fmt, tmp_path):
    """Every other format Pillow knows is a decoder an upload could reach: it gets the message
    of a file that is no image, whatever the file is called."""
    path = tmp_path / "film.png"
    path.write_bytes(png_bytes(Image.fromarray(GREY8), fmt))
    assert Image.open(path).format == fmt  # a real file of that format
    with pytest.raises(ImageLoadError, match=r"film\.png: not an image Pillow or pydicom can "
                                             r"read \(expected PNG, JPEG or DICOM\)$"):
        load_image(path)


def test_too_many_pixels_checked_from_header_before_decoding():
    # Header says 24x32 but the pixel data is cut: the size check must fire first.
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(GOOD_PNG[:60], max_pixels=100)
    load_image(GOOD_PNG, max_pixels=24 * 32)  # at the limit is fine


def test_pillow_decompression_bomb_becomes_image_load_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses > 2x this
    with pytest.raises(ImageLoadError, match="bomb.png: image too large"):
        load_image(GOOD_PNG, name="bomb.png")


def test_dicom_too_large_checked_before_decoding():
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(dicom_bytes(RAMP12, bits=12), max_pixels=100)



@pytest.mark.parametrize("view,ok", [("PA", True), ("ap ", True), ("", True), ("LL", False),
                                     ("LATERAL", False), ("OBLIQUE", False)])
def test_check_frontal_is_the_one_view_rule(view, ok):
    """predict and the dashboard share it: a named view must be PA or AP; no view passes."""
    img = LoadedImage(np.zeros((16, 16), np.float32), {"view": view} if view else {})
    if ok:
        assert check_frontal(img, "film.dcm") is img
    else:
        with pytest.raises(ImageLoadError, match=rf"film\.dcm: .*{view.strip()!r}.*frontal"):
            check_frontal(img, "film.dcm")


@pytest.mark.parametrize("modality, body_part, refused", [
    ("CR", "CHEST", None), ("DX", "", None), ("DR", "THORAX", None), ("", "", None),
    ("dx", "Chest PA", None), ("CR", "PORTABLE CHEST", None), ("DX", "CHESTABDOMEN", None),
    ("CT", "CHEST", r"Modality is 'CT' \(computed tomography\), not a radiograph"),
    ("CT", "HEAD", "Modality is 'CT'"), ("MR", "", "Modality is 'MR'"),
    ("OT", "", r"Modality is 'OT' \(other: a screenshot"), ("MG", "BREAST", "'MG'"),
    ("CR", "HEAD", "BodyPartExamined is 'HEAD', not the chest"),
    ("DX", "KNEE", "BodyPartExamined is 'KNEE'"), ("", "ABDOMEN", "'ABDOMEN'"),
])
def test_check_frontal_refuses_what_the_dicom_tags_say_is_not_a_chest_radiograph(
        modality, body_part, refused):
    meta = {"format": "DICOM", "modality": modality, "body_part": body_part}
    img = LoadedImage(np.zeros((16, 16), np.float32), {k: v for k, v in meta.items() if v})
    if refused is None:
        assert check_frontal(img, "film.dcm") is img
    else:
        with pytest.raises(ImageLoadError, match=rf"film\.dcm: the file's DICOM .*{refused}.*"
                                                 "chest radiographs only"):
            check_frontal(img, "film.dcm")


def test_a_ct_head_dicom_is_refused_end_to_end():
    img = load_image(dicom_bytes(RAMP12, bits=12, Modality="CT", BodyPartExamined="HEAD"))
    assert (img.meta["modality"], img.meta["body_part"]) == ("CT", "HEAD")
    with pytest.raises(ImageLoadError, match="ct.dcm: .*'CT' .*not a radiograph"):
        check_frontal(img, "ct.dcm")


def test_check_frontal_refuses_tiny_images():
    with pytest.raises(ImageLoadError, match=r"strip\.png: .*at least 16x16"):
        check_frontal(LoadedImage(np.zeros((8, 400), np.float32), {}), "strip.png")


def test_files_that_are_not_regular_or_too_large_are_refused_before_reading(tmp_path,
                                                                           monkeypatch):
    import os
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # reading it would block for ever
    with pytest.raises(ImageLoadError, match="pipe: not a regular file"):
        load_image(fifo)
    big = tmp_path / "big.png"
    big.write_bytes(GOOD_PNG)
    monkeypatch.setattr("cxr.data.images.MAX_FILE_BYTES", 100)
    with pytest.raises(ImageLoadError, match=r"big\.png: file too large"):
        load_image(big)

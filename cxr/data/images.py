"""Load one chest X-ray (PNG, JPEG or DICOM) into a float32 greyscale array in [0, 1].

    >>> from cxr.data.images import load_image
    >>> img = load_image("../shared/data/nih/images/00000100_000.png")
    >>> img.pixels.shape, img.pixels.dtype, img.meta
    ((1024, 1024), dtype('float32'), {'format': 'PNG', 'mode': 'RGBA', 'bits': 8})

Output range: 0.0 = black, 1.0 = white, as a radiologist views the film (DICOM MONOCHROME1,
where 0 is white, is inverted). Integer images are scaled by their bit depth, never by their
maximum, so a dark 16-bit image stays dark: 8-bit / 255, 16-bit / 65535, DICOM by BitsStored
(or by the window / VOI LUT output range when the file carries one).

DICOM is recognised by the `DICM` magic at byte 128, whatever the file is called. `meta` only
ever holds `format`, `mode`, `bits`, `frames` and `view` (ViewPosition): never patient
identifiers. Every failure (empty, not an image, truncated, corrupt, too many pixels) is an
`ImageLoadError` naming the file.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000  # a 1024x1024 NIH image is 1 MP; beyond this is an attack or a mistake
_DICOM_MAGIC_AT, _DICOM_MAGIC = 128, b"DICM"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # chunk type + CRC of the mandatory last chunk
FRONTAL_VIEWS = ("PA", "AP")  # what ChestX-ray14 holds and the models were trained on
_TO_GREY = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La")


class ImageLoadError(ValueError):
    """An image that cannot be read; the message names the file and the reason."""


@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 HxW in [0, 1], 0 = black
    meta: dict = field(default_factory=dict)


def load_image(source: str | os.PathLike | bytes | BinaryIO, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode a path, bytes or binary file object; `name` labels errors (default: the path)."""
    data, name = _read_source(source, name)
    if not data:
        raise ImageLoadError(f"{name}: empty file")
    try:
        if _is_dicom(data):
            return _load_dicom(data, max_pixels)
        return _load_pillow(data, max_pixels)
    except ImageLoadError as exc:
        raise ImageLoadError(f"{name}: {exc}") from exc.__cause__
    except Exception as exc:  # decoder internals raise anything (OSError, SyntaxError, zlib...)
        raise ImageLoadError(f"{name}: corrupt or unreadable image "
                             f"({type(exc).__name__}: {exc})") from exc


def check_frontal(image: LoadedImage, name: str) -> LoadedImage:
    """The one view rule (predict, the dashboard): a file whose metadata names a view must say
    PA or AP; files that name none (PNG, JPEG, most exports) pass."""
    view = str(image.meta.get("view", "")).strip().upper()
    if view and view not in FRONTAL_VIEWS:
        raise ImageLoadError(f"{name}: the file's metadata says view {view!r}, not a frontal "
                             "(PA/AP) chest film (a lateral view?); the models were trained on "
                             "frontal films only")
    return image


def _read_source(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return path.read_bytes(), name or str(path)
        except OSError as exc:
            reason = exc.strerror or exc
            raise ImageLoadError(f"{name or path}: cannot read file ({reason})") from exc
    if hasattr(source, "read"):
        data, name = source.read(), name or str(getattr(source, "name", "<file object>"))
        if not isinstance(data, bytes):
            raise TypeError(f"{name}: file object is in text mode; open it with 'rb'")
        return data, name
    raise TypeError(f"load_image expects a path, bytes or a binary file object, "
                    f"not {type(source).__name__}")


def _is_dicom(data: bytes) -> bool:
    return data[_DICOM_MAGIC_AT:_DICOM_MAGIC_AT + 4] == _DICOM_MAGIC


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageLoadError(f"image too large: {width}x{height} = {width * height:,} pixels "
                             f"> limit {max_pixels:,} (load_image(max_pixels=...))")


# --- PNG / JPEG (Pillow) ------------------------------------------------------------------------

def _load_pillow(data: bytes, max_pixels: int) -> LoadedImage:
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image too large ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError("not an image Pillow or pydicom can read "
                             "(expected PNG, JPEG or DICOM)") from exc
    _check_pixels(img.width, img.height, max_pixels)  # before any pixel is decoded
    if data.startswith(_PNG_SIGNATURE) and data.rfind(_PNG_IEND) < 0:
        # Pillow decodes a PNG cut after its image data without complaint; the spec's IEND
        # chunk is the only proof the file is whole.
        raise ImageLoadError("truncated PNG (no IEND chunk at the end)")
    img.load()  # raises OSError "image file is truncated" (LOAD_TRUNCATED_IMAGES stays False)
    meta = {"format": img.format, "mode": img.mode}
    pixels, meta["bits"] = _pillow_to_float(img)
    return LoadedImage(pixels, meta)


def _pillow_to_float(img: Image.Image) -> tuple[np.ndarray, int]:
    mode = img.mode
    if mode.startswith("I;16"):  # 16-bit grey PNG / TIFF
        return np.asarray(img, dtype=np.float32) / 65535.0, 16
    if mode == "I":  # 32-bit container; from PNG it holds 16-bit samples
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageLoadError(f"mode 'I' values {arr.min()}..{arr.max()} outside 16-bit range")
        return arr.astype(np.float32) / 65535.0, 16
    if mode in _TO_GREY:
        # Alpha is dropped (NIH's RGBA files are opaque grey); colour -> ITU-R 601 luma.
        if mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        grey = img if mode == "L" else img.convert("L")
        return np.asarray(grey, dtype=np.float32) / 255.0, 1 if mode == "1" else 8
    raise ImageLoadError(f"unsupported image mode {mode!r}")


# --- DICOM (pydicom) ----------------------------------------------------------------------------

def _load_dicom(data: bytes, max_pixels: int) -> LoadedImage:
    import pydicom  # only DICOM users pay for the import
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise ImageLoadError(f"corrupt DICOM ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise ImageLoadError("DICOM file has no pixel data (PixelData element missing)")
    _check_pixels(int(ds.get("Columns", 0)), int(ds.get("Rows", 0)), max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageLoadError(f"DICOM PhotometricInterpretation {photometric!r} is not a "
                             "greyscale X-ray (MONOCHROME1/2 expected)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = pixel_array(ds, index=0)  # decodes the first frame only (multi-frame: frame 0)
    lo, hi = _dicom_output_range(ds)
    arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    pixels = np.clip((arr.astype(np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":  # 0 = white in the file; we show 0 = black
        pixels = 1.0 - pixels
    meta = {"format": "DICOM", "mode": photometric, "bits": int(ds.get("BitsStored", 0) or 0),
            "frames": frames}
    view = str(ds.get("ViewPosition", "") or "").strip()
    if view:
        meta["view"] = view
    return LoadedImage(pixels.astype(np.float32), meta)


def _dicom_output_range(ds) -> tuple[float, float]:
    """The value range after pydicom's modality + VOI steps, fixed by the header (never by the
    pixel values): a VOI LUT gives 0..2**bits-1 of its descriptor; windowing maps onto the
    stored range (after rescale); without either it is the stored range itself."""
    voi = ds.get("VOILUTSequence")
    if voi:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    modality = ds.get("ModalityLUTSequence")
    if modality:
        return 0.0, float(2 ** int(modality[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** bits - 1)
    else:
        lo, hi = -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        slope, intercept = float(slope), float(intercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi

"""Load one chest X-ray (PNG, JPEG or DICOM) into a float32 greyscale array in [0, 1].

    >>> from cxr.data.images import load_image
    >>> img = load_image("../shared/data/nih/images/00000100_000.png")
    >>> img.pixels.shape, img.pixels.dtype, img.meta
    ((1024, 1024), dtype('float32'), {'format': 'PNG', 'mode': 'RGBA', 'bits': 8})

Output range: 0.0 = black, 1.0 = white, as a radiologist views the film (DICOM MONOCHROME1,
where 0 is white, is inverted). Integer images are scaled by their bit depth, never by their
maximum, so a dark 16-bit image stays dark: 8-bit / 255, 16-bit / 65535, DICOM by BitsStored
(or by the window / VOI LUT output range when the file carries one).

DICOM, recognised by the `DICM` magic at byte 128 whatever the file is called, is decoded by
`cxr.data.dicom` (syntaxes, refusals, why no patient identifier can come out); anything else
by Pillow, which may open it as PNG or JPEG only (PILLOW_FORMATS). Every failure (empty, not an
image, another format, truncated, corrupt, too large, not one greyscale image) is an
`ImageLoadError` naming the file.

Memory: the size is checked from the header (MAX_PIXELS, and Pillow's own MAX_IMAGE_PIXELS set
to it) before a pixel is decoded, and a decoded film becomes float a band of rows at a time:
a film at the limit holds its decoded pixels and the float32 output (4 bytes a pixel), little
more. What a forged DICOM frame could make a decoder allocate is checked in cxr.data.dicom.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000  # a 1024x1024 NIH image is 1 MP; beyond this is an attack or a mistake
MAX_FILE_BYTES = 512 * 2 ** 20  # 5x an uncompressed 16-bit film of MAX_PIXELS: never read more
MIN_SIDE = 16  # pixels; anything smaller is not a chest film
_DICOM_MAGIC_AT, _DICOM_MAGIC = 128, b"DICM"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # chunk type + CRC of the mandatory last chunk
FRONTAL_VIEWS = ("PA", "AP")  # what ChestX-ray14 holds and the models were trained on
# DICOM Modality codes of projection radiographs: computed and digital radiography; "DR" is no
# DICOM code but some digital-radiography systems write it.
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR")
# A BodyPartExamined naming the chest contains one of these ("CHEST", "CHEST PA", "THORAX").
CHEST_BODY_PARTS = ("CHEST", "THORAX", "TORAX", "LUNG")
_MODALITY_NAMES = {"CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound",
                   "MG": "mammography", "XA": "angiography", "RF": "fluoroscopy",
                   "NM": "nuclear medicine", "PT": "PET",
                   "OT": "other: a screenshot or scanned page?"}
_TO_GREY = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La")
_BAND_ROWS = 256  # rows turned into float at a time
# What Pillow may open. It knows dozens of formats (BMP, TIFF, GIF, WebP, ICO, TGA, DDS, EPS
# through Ghostscript...), each a decoder an upload could reach; a film comes as PNG or JPEG
# (DICOM goes to pydicom), and anything else gets the message of a file that is no image.
PILLOW_FORMATS = ("PNG", "JPEG")
_NOT_AN_IMAGE = "not an image Pillow or pydicom can read (expected PNG, JPEG or DICOM)"
# Pillow's own guard, at the project's limit: Image.open refuses more than twice this
# (DecompressionBombError) before any pixel is decoded. Between once and twice it only warns;
# check_pixel_count refuses those right after, so that warning would only repeat it.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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
        if data.startswith(_DICOM_MAGIC, _DICOM_MAGIC_AT):
            from cxr.data.dicom import load_dicom  # only DICOM users pay for pydicom
            return load_dicom(data, max_pixels)
        return _load_pillow(data, max_pixels)
    except ImageLoadError as exc:
        raise ImageLoadError(f"{name}: {exc}") from exc.__cause__
    except Exception as exc:  # decoder internals raise anything (OSError, SyntaxError, zlib...)
        raise ImageLoadError(f"{name}: corrupt or unreadable image "
                             f"({type(exc).__name__}: {exc})") from exc


def check_frontal(image: LoadedImage, name: str) -> LoadedImage:
    """The one "is this a frontal chest film" rule (predict, the dashboard), from what the file
    says of itself; a tag the file leaves empty passes (PNG and JPEG say none of them):
      Modality          CR, DX or DR (a CT, MR, ultrasound, a screenshot (OT)... is refused)
      BodyPartExamined  names the chest (contains CHEST, THORAX, TORAX or LUNG)
      ViewPosition      PA or AP (a lateral is refused)
      size              at least MIN_SIDE pixels each way"""
    modality, body_part, view = (str(image.meta.get(key, "")).strip()
                                 for key in ("modality", "body_part", "view"))
    if modality and modality.upper() not in RADIOGRAPH_MODALITIES:
        kind = _MODALITY_NAMES.get(modality.upper())
        raise ImageLoadError(f"{name}: the file's DICOM Modality is {modality!r}"
                             + (f" ({kind})" if kind else "") + ", not a radiograph (CR/DX); "
                             "the models read chest radiographs only")
    if body_part and not any(part in body_part.upper() for part in CHEST_BODY_PARTS):
        raise ImageLoadError(f"{name}: the file's DICOM BodyPartExamined is {body_part!r}, not "
                             "the chest; the models read chest radiographs only")
    if view and view.upper() not in FRONTAL_VIEWS:
        raise ImageLoadError(f"{name}: the file's metadata says view {view!r}, not a frontal "
                             "(PA/AP) chest film (a lateral view?); the models were trained on "
                             "frontal films only")
    if image.pixels.ndim != 2 or min(image.pixels.shape) < MIN_SIDE:
        raise ImageLoadError(f"{name}: image is {image.pixels.shape}; a chest film needs at "
                             f"least {MIN_SIDE}x{MIN_SIDE} pixels")
    return image


def _read_source(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or str(path)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read forever
                raise ImageLoadError(f"{name}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ImageLoadError(f"{name}: file too large ({info.st_size:,} bytes > "
                                     f"{MAX_FILE_BYTES:,})")
            return path.read_bytes(), name
        except OSError as exc:
            raise ImageLoadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if hasattr(source, "read"):
        data, name = source.read(), name or str(getattr(source, "name", "<file object>"))
        if not isinstance(data, bytes):
            raise TypeError(f"{name}: file object is in text mode; open it with 'rb'")
        return data, name
    raise TypeError(f"load_image expects a path, bytes or a binary file object, "
                    f"not {type(source).__name__}")


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image from its header, before a pixel is decoded."""
    if width * height > max_pixels:
        raise ImageLoadError(f"image too large: {width}x{height} = {width * height:,} pixels "
                             f"> limit {max_pixels:,} (load_image(max_pixels=...))")


# --- PNG / JPEG (Pillow) ------------------------------------------------------------------------

def _load_pillow(data: bytes, max_pixels: int) -> LoadedImage:
    try:  # reads the header only, and only as PNG or JPEG
        img = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image too large ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(_NOT_AN_IMAGE) from exc
    check_pixel_count(img.width, img.height, max_pixels)  # before any pixel is decoded
    if data.startswith(_PNG_SIGNATURE) and data.rfind(_PNG_IEND) < 0:
        # Pillow decodes a PNG cut after its image data without complaint; the spec's IEND
        # chunk is the only proof the file is whole.
        raise ImageLoadError("truncated PNG (no IEND chunk at the end)")
    img.load()  # raises OSError "image file is truncated" (LOAD_TRUNCATED_IMAGES stays False)
    meta = {"format": img.format, "mode": img.mode}
    # Reassigned, so that a colour image is gone before the float output is made.
    img, full_scale, meta["bits"] = _grey_form(img)
    return LoadedImage(_scaled(img, full_scale), meta)


def _grey_form(img: Image.Image) -> tuple[Image.Image, float, int]:
    """(greyscale image, the value of white in it, bits) of a decoded Pillow image."""
    mode = img.mode
    if mode.startswith("I;16"):  # 16-bit grey PNG
        return img, 65535.0, 16
    if mode == "I":  # 32-bit container; from PNG it holds 16-bit samples
        lo, hi = img.getextrema()
        if lo < 0 or hi > 65535:
            raise ImageLoadError(f"mode 'I' values {lo}..{hi} outside 16-bit range")
        return img, 65535.0, 16
    if mode in _TO_GREY:
        # Alpha is dropped (NIH's RGBA files are opaque grey); colour -> ITU-R 601 luma.
        if mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        return (img if img.mode == "L" else img.convert("L")), 255.0, 1 if mode == "1" else 8
    raise ImageLoadError(f"unsupported image mode {mode!r}")


def _scaled(img: Image.Image, full_scale: float) -> np.ndarray:
    """img / full_scale as float32, made a band of rows at a time: at most the grey image and
    the output are held (245 MB at the 50 MP limit), where converting it whole held a bytes
    copy of it and a float32 copy more (409 MB; 597 from RGB)."""
    out = np.empty((img.height, img.width), np.float32)
    for top in range(0, img.height, _BAND_ROWS):
        band = img.crop((0, top, img.width, min(top + _BAND_ROWS, img.height)))
        out[top:top + band.height] = np.asarray(band)
    out /= full_scale  # in place; the same float32 division as `array / full_scale`
    return out

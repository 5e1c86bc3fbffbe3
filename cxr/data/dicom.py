"""DICOM films -> float32 greyscale in [0, 1], and no patient identifier ever comes out.

Called by `cxr.data.images.load_image` (which recognises DICOM by content):

    >>> from cxr.data.images import load_image
    >>> load_image("../shared/data/dicom/nih_jpeg_lossless_sv1.dcm").meta
    {'format': 'DICOM', 'mode': 'MONOCHROME2', 'bits': 12, 'frames': 1, 'modality': 'DX'}

Compressed transfer syntaxes are decoded by pydicom's pixel-data plugins:

    JPEG Baseline 8-bit (1.2.840.10008.1.2.4.50)               Pillow (libjpeg)
    JPEG 2000 lossless and lossy (.4.90, .4.91)                Pillow (OpenJPEG)
    RLE Lossless (1.2.840.10008.1.2.5)                         pydicom itself
    JPEG Lossless, process 14 and its SV1 (.4.57, .4.70)       GDCM, in a worker process
    JPEG-LS lossless and near-lossless (.4.80, .4.81)          GDCM, in a worker process
    JPEG Extended 8-bit (.4.51)                                GDCM, in a worker process

Not decoded, with a message naming the syntax: 12-bit JPEG Extended (pydicom declines it with
GDCM and Pillow), HTJ2K, and anything pydicom does not know.

Why GDCM (BSD, its wheel Apache-2.0): one package covers every syntax above, while the only
other plugin for JPEG Lossless SV1 (the commonest syntax of CR/DX archives) and JPEG-LS,
pylibjpeg-libjpeg, is GPL-3 (README.md, "DICOM support"). GDCM aborts the whole process on some
damaged files, so it runs apart (cxr.data.dicom_worker), and what Pillow or pydicom can decode
never goes to it.

Decoding bombs: a JPEG, JPEG-LS or JPEG 2000 frame's own header (`cxr.data.codestreams`) must
be within the pixel limit and say the Rows, Columns and SamplesPerPixel of the DICOM header
before any decoder sees it (a 4 KB file saying 64x64 can hold a 13000x13000 SIZ marker); a
Deflated Explicit VR Little Endian dataset is counted as it inflates, in 1 MB steps, and refused
beyond `inflate_limit` (2 bytes a pixel of the limit + 16 MiB) before it is held; the stored
values become float a band of rows at a time; and the GDCM worker's memory is capped.

Refused with an `ImageLoadError` saying why: no pixel data (a structured report, an encapsulated
PDF), more than one frame, colour, and pixel data that cannot be decoded (naming the transfer
syntax). Whether it is a frontal chest radiograph is `cxr.data.images.check_frontal`'s rule, by
the tags alone: a secondary capture of a report (Modality OT) is refused there, one that holds a
chest film (CR, CHEST, PA, as the SIIM-ACR challenge films) passes.

Privacy: `meta` holds only format, mode, bits, frames, view, modality and body_part, and error
messages only quote those code-string tags. Any value that repeats a patient identifier of the
same file (every person name, and the IDENTIFYING tags below) is replaced by WITHHELD, in `meta`
and in the text of pydicom's or a decoder's errors alike; pydicom's validation warnings, which
quote tag values, are switched off.
"""
from __future__ import annotations

import io
import re
import warnings
import zlib

import numpy as np
import pydicom
from pydicom import config
from pydicom.encaps import get_frame
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (UID, JPEG2000, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGBaseline8Bit, RLELossless)

from cxr.data import dicom_worker
from cxr.data.codestreams import frame_header
from cxr.data.images import ImageLoadError, LoadedImage, check_pixel_count

# pydicom's reading validation warns with the offending value ("Invalid value for VR DA:
# '19700101'"), to stderr and its logger; that value may be a patient's. Never validate.
config.settings.reading_validation_mode = config.IGNORE

WITHHELD = "[withheld]"
# Names, IDs, dates and places of PS3.15 Annex E (the de-identification profile); every element of
# VR PN (person name) counts too, wherever it is.
IDENTIFYING = frozenset((
    "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime", "PatientAge",
    "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator", "PatientComments",
    "AdditionalPatientHistory", "Occupation", "MilitaryRank", "CountryOfResidence",
    "RegionOfResidence", "AccessionNumber", "StudyID", "AdmissionID", "RequestedProcedureID",
    "ScheduledProcedureStepID", "PerformedProcedureStepID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "AcquisitionDateTime", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
))
# Decoders that fail with a Python error on damaged data run here; GDCM's syntaxes, in the worker.
IN_PROCESS = {JPEGBaseline8Bit: "pillow", JPEG2000Lossless: "pillow", JPEG2000: "pillow",
              RLELossless: "pydicom"}
_MIN_TOKEN = 3  # shorter pieces ("F", "42") would blank out ordinary words and numbers
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
# A deflated dataset may inflate to a 16-bit frame of the pixel limit plus this much of other
# elements (overlays, private tags, an ICC profile); 98 KB of deflate can hold 100 MB, 1 MB a GB.
_DATASET_ALLOWANCE = 16 * 2 ** 20
_INFLATE_CHUNK = 2 ** 20
_BAND_ROWS = 256  # rows turned into float at a time


def inflate_limit(max_pixels: int) -> int:
    """The most bytes a deflated DICOM dataset may inflate to (2 bytes a pixel + allowance)."""
    return 2 * max_pixels + _DATASET_ALLOWANCE


def load_dicom(data: bytes, max_pixels: int) -> LoadedImage:
    """One single-frame greyscale DICOM image -> LoadedImage; anything else is ImageLoadError."""
    with warnings.catch_warnings():  # pydicom warns about damaged files; the error says it
        warnings.simplefilter("ignore")
        data = _inflated(data, max_pixels)
        ds = _read(data)
        ids = identifiers(ds)
        try:
            return _to_image(ds, data, max_pixels, ids)
        except ImageLoadError:
            raise
        except Exception as exc:  # a damaged element anywhere; `from None`: no unredacted cause
            raise ImageLoadError(f"corrupt DICOM ({type(exc).__name__}: "
                                 f"{redact(str(exc), ids)})") from None


def identifiers(ds) -> re.Pattern | None:
    """A pattern matching, as whole words in any case, the identifier values of `ds` (>= 3
    characters), and each part of a person's name; None when it has none. Only names are split:
    an institution's words ("London Chest Hospital") are ordinary words elsewhere. A dataset that
    cannot be walked is corrupt: nothing of it could be vouched for."""
    tokens: set[str] = set()
    try:
        for elem in ds.iterall():
            if elem.VR != "PN" and elem.keyword not in IDENTIFYING:
                continue
            value = elem.value
            for item in list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]:
                text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
                text = " ".join(text.upper().split())
                tokens.add(text)
                if elem.VR == "PN":  # family^given^middle^prefix^suffix, = between spellings
                    tokens.update(re.split(r"[\^=\s]+", text))
    except Exception as exc:
        raise ImageLoadError(f"corrupt DICOM: its elements cannot be read "
                             f"({type(exc).__name__})") from None
    words = sorted((t for t in tokens if len(t) >= _MIN_TOKEN), key=len, reverse=True)
    if not words:
        return None
    # Whole words only: a patient called Ann must not blank every "annotation".
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, words))
                      + r")(?![A-Za-z0-9])", re.IGNORECASE)


def shown(value, ids: re.Pattern | None) -> str:
    """A code-string tag (Modality, BodyPartExamined, ...) as meta and messages may carry it:
    trimmed upper case; '' when empty; WITHHELD when it is not short printable ASCII or repeats
    an identifier of the same file."""
    text = " ".join(str(value if value is not None else "").split()).upper()
    if len(text) > 64 or not (text.isascii() and text.isprintable()) or (ids and ids.search(text)):
        return WITHHELD
    return text


def redact(text: str, ids: re.Pattern | None) -> str:
    """`text` (an error from pydicom or a decoder) on one line, identifier words withheld."""
    text = " ".join(text.split())
    return ids.sub(WITHHELD, text) if ids else text


def _read(data: bytes):
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # its text may quote the damaged bytes: name only the kind
        raise ImageLoadError(f"corrupt DICOM: the header cannot be parsed "
                             f"({type(exc).__name__})") from None


def _inflated(data: bytes, max_pixels: int) -> bytes:
    """A Deflated Explicit VR Little Endian file as the same file in Explicit VR Little Endian,
    or `data` itself when it is not deflated. Its inflated size is counted in bounded steps
    first (pydicom would inflate it whole, whatever its size), and refused beyond
    `inflate_limit(max_pixels)`."""
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception:  # not readable: pydicom's own reading (_read) says it is corrupt
        return data
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return data
    body, limit = data[fp.tell():], inflate_limit(max_pixels)
    size = _inflated_size(body, limit)
    try:
        if size <= limit:
            inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            header = DicomBytesIO()
            write_file_meta_info(header, meta, enforce_standard=True)
    except (zlib.error, ValueError) as exc:  # damaged stream; file meta lacking its UIDs
        raise ImageLoadError(f"corrupt deflated DICOM ({type(exc).__name__}: {exc})") from None
    if size > limit:
        raise ImageLoadError(f"deflated DICOM dataset inflates to more than {limit:,} bytes, "
                             f"more than a film of {max_pixels:,} pixels needs (a decompression "
                             "bomb?); refused before inflating it")
    return data[:132] + header.getvalue() + inflated


def _inflated_size(body: bytes, limit: int) -> int:
    """How many bytes the raw deflate stream `body` inflates to, counted a chunk at a time and
    only up to the first chunk beyond `limit`; a stream cut short is an ImageLoadError."""
    counter, size, rest = zlib.decompressobj(-zlib.MAX_WBITS), 0, body
    while rest and not counter.eof and size <= limit:
        size += len(counter.decompress(rest, _INFLATE_CHUNK))
        rest = counter.unconsumed_tail
    if size <= limit and not counter.eof:
        raise ImageLoadError("truncated deflated DICOM: its deflate stream ends before its end "
                             "marker")
    return size


def _to_image(ds, data: bytes, max_pixels: int, ids) -> LoadedImage:
    _check_one_image(ds, data)
    check_pixel_count(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_pixels)
    photometric = shown(ds.get("PhotometricInterpretation", "MONOCHROME2"), ids)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageLoadError(f"DICOM PhotometricInterpretation {photometric!r} is not a "
                             "greyscale X-ray (MONOCHROME1/2 expected)")
    arr = _decode(ds, data, max_pixels, ids)
    del ds.PixelData  # decoded: the encoded copy can go before the float image is made
    pixels = _unit_range(arr, ds, invert=photometric == "MONOCHROME1")
    meta = {"format": "DICOM", "mode": photometric, "bits": int(ds.get("BitsStored", 0) or 0),
            "frames": 1}
    for key, keyword in (("view", "ViewPosition"), ("modality", "Modality"),
                         ("body_part", "BodyPartExamined")):
        value = shown(ds.get(keyword), ids)
        if value:
            meta[key] = value
    return LoadedImage(pixels, meta)


def _unit_range(arr: np.ndarray, ds, invert: bool) -> np.ndarray:
    """The stored values through the modality and VOI steps onto [0, 1] as float32 (inverted
    for MONOCHROME1, where 0 is white), a band of rows at a time: the float64 steps of the whole
    film at once held 12 bytes a pixel more (1.2 GB for a film at the 50 MP limit)."""
    lo, hi = _output_range(ds)
    out = np.empty(arr.shape, np.float32)
    for top in range(0, arr.shape[0], _BAND_ROWS):
        band = apply_voi_lut(apply_modality_lut(arr[top:top + _BAND_ROWS], ds), ds)
        band = band.astype(np.float64)
        if not np.isfinite(band).all():
            raise ImageLoadError("pixel values are not finite after RescaleSlope/Intercept and "
                                 "the VOI LUT or window")
        band = np.clip((band - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        out[top:top + len(band)] = 1.0 - band if invert else band
    return out


def _check_one_image(ds, data: bytes) -> None:
    """Refuse what is not one acquired image."""
    sop = UID(str(ds.get("SOPClassUID", "") or ""))
    what = f"a DICOM {sop.name}" if sop.keyword else "a DICOM file"  # known classes only
    if "PixelData" not in ds:
        if _PIXEL_DATA_TAG in data:  # pydicom drops an encapsulated element cut short
            raise ImageLoadError("truncated or corrupt DICOM: its pixel data cannot be read")
        if "Image Storage" in what:  # an image class without its image: cut before it
            raise ImageLoadError(f"{what} with no pixel data: the file is truncated or damaged")
        raise ImageLoadError(f"{what} with no pixel data (no image: a report or document?); "
                             "a chest radiograph is expected")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageLoadError(f"multi-frame DICOM ({frames} frames): a chest radiograph is a "
                             "single image; export the film as a single-frame DICOM, PNG or JPEG")


def _decode(ds, data: bytes, max_pixels: int, ids) -> np.ndarray:
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "") or ""))
    name = syntax.name if syntax.keyword else "unknown transfer syntax"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageLoadError(f"DICOM transfer syntax not supported ({name})") from None
    if not decoder.is_native and syntax != RLELossless:
        _check_frame_header(ds, name, max_pixels)
    try:
        if decoder.is_native:
            return pixel_array(ds, index=0)
        if syntax in IN_PROCESS:
            return pixel_array(ds, index=0, decoding_plugin=IN_PROCESS[syntax])
        if not decoder.available_plugins:  # e.g. HTJ2K, which only pylibjpeg decodes
            missing = "; ".join(decoder.missing_dependencies)
            raise ImageLoadError(f"no decoder for {name} is installed ({missing})")
        return dicom_worker.decode(data)
    except ImageLoadError:
        raise
    except Exception as exc:  # damaged compressed data, or a crashed decoder
        raise ImageLoadError(f"cannot decode the DICOM pixel data ({name}): "
                             f"{redact(str(exc), ids)}") from None


def _check_frame_header(ds, name: str, max_pixels: int) -> None:
    """The JPEG, JPEG-LS or JPEG 2000 frame's own header, before a decoder sees it: within the
    pixel limit, and the size and samples the DICOM header says (what was checked against the
    limit). RLE's decoder allocates by Rows and Columns, native data is the file itself."""
    try:
        frame = frame_header(get_frame(ds.PixelData, 0, number_of_frames=1))
    except ValueError as exc:
        raise ImageLoadError(f"cannot decode the DICOM pixel data ({name}): {exc}") from None
    check_pixel_count(frame.width, frame.height, max_pixels)
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if (frame.width, frame.height, frame.components) != (columns, rows, samples):
        raise ImageLoadError(
            f"the {name} frame declares {frame.width}x{frame.height} pixels with "
            f"{frame.components} component(s), but the DICOM header says {columns}x{rows} with "
            f"{samples}: a damaged or forged file; not decoded")


def _output_range(ds) -> tuple[float, float]:
    """The value range after pydicom's modality + VOI steps, fixed by the header (never by the
    pixel values): a VOI LUT gives 0..2**bits-1 of its descriptor; windowing maps onto the
    stored range (after rescale); without either it is the stored range itself."""
    for lut in (ds.get("VOILUTSequence"), ds.get("ModalityLUTSequence")):
        if lut:
            return 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
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

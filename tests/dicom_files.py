"""DICOM films for the tests, in every transfer syntax the project decodes, with patient
identifiers planted so that tests can check that none of them ever comes out.

    ds = dataset(pixels, bits=12, ViewPosition="PA")   # uncompressed, identifiers planted
    data = encode(ds, "jpeg-ls")                        # the same film as JPEG-LS Lossless bytes

Encoders: RLE by pydicom itself, JPEG-LS by pyjpegls (CharLS), JPEG 2000 and JPEG Baseline by
Pillow (OpenJPEG, libjpeg) encapsulated with pydicom.encaps, JPEG Lossless (process 14 and its
SV1), JPEG-LS near-lossless and JPEG Extended by GDCM (pydicom cannot write them). The real
films of ../shared/data/dicom were written by DCMTK instead.
"""
from __future__ import annotations

import copy
import io
import tempfile
import zlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (JPEG2000, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless,
                         generate_uid)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
PLANTED = {"PatientName": "Quarendon^Philippa", "PatientID": "PID-7731",
           "PatientBirthDate": "19700101", "AccessionNumber": "ACC-99812",
           "InstitutionName": "St Wilfrida Infirmary", "ReferringPhysicianName": "Brackwell^Osmund",
           "OtherPatientIDs": "OPID-4242"}
# What must never appear in anything shown, logged or written (case-insensitive); words no
# message would hold by chance.
SECRETS = ("Quarendon", "Philippa", "PID-7731", "19700101", "ACC-99812", "Wilfrida", "Brackwell",
           "Osmund", "OPID-4242")
LOSSLESS = ("rle", "jpeg-ls", "jpeg2000", "jpeg-lossless-sv1", "jpeg-lossless")
LOSSY = ("jpeg-baseline", "jpeg-extended", "jpeg2000-lossy", "jpeg-ls-near")
EIGHT_BIT = ("jpeg-baseline", "jpeg-extended")  # the syntaxes the project decodes at 8 bits only
_GDCM_SYNTAXES = {"jpeg-lossless-sv1": "JPEGLosslessProcess14_1",
                  "jpeg-lossless": "JPEGLosslessProcess14", "jpeg-ls-near": "JPEGLSNearLossless",
                  "jpeg-extended": "JPEGExtendedProcess2_4"}
SHARED_DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom"


def dataset(pixels: np.ndarray | None, bits: int = 12, photometric: str = "MONOCHROME2",
            sop_class: str = DX_STORAGE, **elements) -> Dataset:
    """An uncompressed DX film (frames x rows x cols for multi-frame), identifiers planted;
    `elements` set or override any keyword (Modality="CT", ViewPosition="LL", ...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for key, value in {**PLANTED, **elements}.items():
        setattr(ds, key, value)
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def encode(ds: Dataset, syntax: str) -> bytes:
    """The file bytes of `ds` in `syntax`, one of LOSSLESS, LOSSY or "explicit" ("jpeg-extended"
    of 12-bit pixels makes a file the project cannot decode)."""
    ds = copy.deepcopy(ds)
    pixels = ds.pixel_array
    if syntax == "explicit":
        pass
    elif syntax == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax == "jpeg-ls":
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    elif syntax in ("jpeg2000", "jpeg2000-lossy"):
        lossy = syntax == "jpeg2000-lossy"
        options = dict(irreversible=True, quality_mode="rates", quality_layers=[20]) if lossy \
            else dict(irreversible=False)
        frame = _pillow(pixels, "JPEG2000", no_jp2=True, **options)  # a raw J2K codestream
        _encapsulate(ds, frame, JPEG2000 if lossy else JPEG2000Lossless)
        if lossy:
            ds.LossyImageCompression = "01"
    elif syntax == "jpeg-baseline":
        assert pixels.dtype == np.uint8, "JPEG Baseline holds 8-bit pixels"
        _encapsulate(ds, _pillow(pixels, "JPEG", quality=95), JPEGBaseline8Bit)
        ds.LossyImageCompression = "01"
    elif syntax in _GDCM_SYNTAXES:
        return _gdcm_transcode(to_bytes(ds), _GDCM_SYNTAXES[syntax])
    else:
        raise ValueError(f"unknown syntax {syntax!r}")
    return to_bytes(ds)


def damaged(data: bytes) -> bytes:
    """The file with the body of its (last) pixel data zeroed, its end kept: the header and the
    encapsulation stay whole, the compressed stream does not. Needs a film of a few kB."""
    assert len(data) > 2400, "too small a film to damage its pixel data only"
    return data[:-1200] + bytes(1190) + data[-10:]


NOISY12 = (np.random.default_rng(0).random((40, 48)) * 4095).astype(np.uint16)  # a few kB packed


def _pillow(pixels: np.ndarray, fmt: str, **options) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()


def _encapsulate(ds: Dataset, frame: bytes, syntax) -> None:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax


def _gdcm_transcode(data: bytes, syntax: str) -> bytes:
    """GDCM reads and writes files only: round-trip through a temporary folder."""
    import gdcm
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        src.write_bytes(data)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        assert reader.Read(), "GDCM cannot read the uncompressed film"
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
        change.SetInput(reader.GetImage())
        assert change.Change(), f"GDCM cannot encode {syntax}"
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        return dst.read_bytes()


# --- decoding bombs: tiny files that declare (or inflate to) far more than they hold -----------

def reframed(data: bytes, width: int, height: int) -> bytes:
    """The JPEG, JPEG-LS or JPEG 2000 file `data` with its codestream's own frame header
    claiming width x height (one tile for JPEG 2000); the DICOM header is left as it was."""
    out = bytearray(data)
    siz = data.find(b"\xff\x4f\xff\x51")
    if siz >= 0:  # SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz (T.800 A.5.1)
        for offset, value in ((8, width), (12, height), (24, width), (28, height)):
            out[siz + offset:siz + offset + 4] = value.to_bytes(4, "big")
        return bytes(out)
    soi = data.find(b"\xff\xd8\xff")
    sof = min(i for i in (data.find(bytes([0xFF, m]), soi) for m in (0xC0, 0xC1, 0xC3, 0xF7))
              if i >= 0)
    out[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")  # P Y X
    return bytes(out)


def deflate_repeated(piece: bytes, times: int, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """Raw deflate of `prefix` + `piece` x `times` + `suffix`, made without holding them: after
    a full flush every piece compresses to the same bytes, so one is repeated."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(piece) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(piece) + comp.flush(zlib.Z_FULL_FLUSH) == block
    return head + block * times + comp.compress(suffix) + comp.flush()


def deflate_zeros(count: int, prefix: bytes = b"", chunk: int = 2 ** 20) -> bytes:
    """Raw deflate of `prefix` + `count` zero bytes (a MB of deflate holds a GB)."""
    return deflate_repeated(bytes(chunk), count // chunk, prefix, bytes(count % chunk))


def deflated_film(pixel_bytes: int, rows: int = 64, columns: int = 64, value: int = 0) -> bytes:
    """A Deflated Explicit VR Little Endian 16-bit DX file whose header says rows x columns and
    whose PixelData inflates to `pixel_bytes` bytes of pixels all of `value` (a GB of them from
    about a MB when that is far more than the header says)."""
    ds = dataset(np.zeros((rows, columns), np.uint16), bits=16)
    del ds.PixelData
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    plain = body.getvalue()
    meta_end = 132 + 12 + int.from_bytes(plain[140:144], "little")  # after the group length
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    meta = copy.deepcopy(ds.file_meta)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    header = DicomBytesIO()
    write_file_meta_info(header, meta, enforce_standard=True)
    pixel, piece = value.to_bytes(2, "little"), 2 ** 20
    stream = deflate_repeated(pixel * (piece // 2), pixel_bytes // piece,
                              prefix=plain[meta_end:] + element,
                              suffix=pixel * (pixel_bytes % piece // 2))
    return plain[:132] + header.getvalue() + stream


def png_flat(width: int, height: int, mode: str = "L", value: int = 128) -> bytes:
    """An 8-bit PNG (grey "L", "RGB" or "RGBA") of width x height pixels all of `value`, made
    without holding them: 7000x7000 grey is 50 KB and decodes to 49 megapixels."""
    colour_type, samples = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}[mode]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    row = b"\x00" + bytes([value]) * (width * samples)  # filter type 0, then the samples
    rows_per_piece = max(1, 2 ** 20 // len(row))
    whole, rest = divmod(height, rows_per_piece)
    piece = row * rows_per_piece
    adler = 1
    for _ in range(whole):
        adler = zlib.adler32(piece, adler)
    adler = zlib.adler32(row * rest, adler)
    stream = (b"\x78\xda" + deflate_repeated(piece, whole, suffix=row * rest)
              + adler.to_bytes(4, "big"))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, colour_type, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream)
            + chunk(b"IEND", b""))

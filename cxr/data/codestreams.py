"""The size a compressed DICOM frame declares in its own codestream, read before it is decoded.

A DICOM header's Rows and Columns are only a claim: the decoder allocates what the codestream
says. A 4 KB JPEG 2000 file whose header says 64x64 can carry a SIZ marker of 13000x13000 that
OpenJPEG decodes into a gigabyte. `cxr.data.dicom` reads the frame's own header here and
refuses it before decoding unless it matches the DICOM header (which passed the pixel limit).

    >>> frame_header(b"\\xff\\x4f\\xff\\x51...")          # a J2K codestream (or a JP2 file)
    FrameHeader(width=13000, height=13000, components=1)
    >>> frame_header(b"\\xff\\xd8\\xff\\xe0...")          # JPEG: SOF0-15 or JPEG-LS SOF55
    FrameHeader(width=64, height=64, components=1)

Markers: ITU-T T.800 (JPEG 2000 SIZ, A.5.1; the JP2 box structure, I.4), T.81 (JPEG frame
header, B.2.2), T.87 (JPEG-LS SOF55, C.2.2). Anything that is not one of these, or is cut
before its frame header, is a ValueError saying so.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers: SOF0-3, 5-7, 9-11, 13-15 (C4 DHT, C8 JPG, CC DAC are not) and
# JPEG-LS's SOF55 (F7).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
                  0xF7))
_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xDA)))  # TEM, RST0-7, SOI, EOI: no segment length
_SOS = 0xDA


class FrameHeader(NamedTuple):
    width: int
    height: int
    components: int


def frame_header(frame: bytes) -> FrameHeader:
    """The size and component count a JPEG, JPEG-LS or JPEG 2000 frame declares."""
    if frame.startswith(_J2K_SOC_SIZ):
        return _siz(frame, 4)
    if frame.startswith(_JP2_SIGNATURE):
        return _siz(_jp2_codestream(frame), 4)
    if frame.startswith(_JPEG_SOI):
        return _sof(frame)
    raise ValueError("the frame is not a JPEG, JPEG-LS or JPEG 2000 codestream "
                     f"(it starts {frame[:4].hex(' ')})")


def _siz(stream: bytes, at: int) -> FrameHeader:
    """JPEG 2000 SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz."""
    if not stream.startswith(_J2K_SOC_SIZ):
        raise ValueError("the JPEG 2000 codestream does not start with SOC and SIZ markers")
    try:
        _, _, xsiz, ysiz, xosiz, yosiz, *_, csiz = struct.unpack_from(">HHIIIIIIIIH", stream, at)
    except struct.error:
        raise ValueError("the JPEG 2000 codestream is cut inside its SIZ marker") from None
    return FrameHeader(xsiz - xosiz, ysiz - yosiz, csiz)


def _jp2_codestream(data: bytes) -> bytes:
    """The contiguous codestream box ('jp2c') of a JP2 file."""
    at = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if length == 1:  # the 64-bit XLBox follows
            if at + 16 > len(data):
                break
            (length,), header = struct.unpack_from(">Q", data, at + 8), 16
        elif length == 0:  # the last box: to the end of the file
            length = len(data) - at
        if kind == b"jp2c":
            return data[at + header:at + length]
        if length < header:
            break
        at += length
    raise ValueError("the JP2 file holds no codestream box (jp2c)")


def _sof(stream: bytes) -> FrameHeader:
    """The frame header of a JPEG or JPEG-LS stream: P Y X Nf after the SOFn marker."""
    at = 2
    while at + 4 <= len(stream):
        if stream[at] != 0xFF:
            raise ValueError(f"the JPEG stream has no marker where one belongs (byte {at})")
        marker = stream[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _NO_LENGTH:
            at += 2
            continue
        if marker == _SOS:
            break
        (length,) = struct.unpack_from(">H", stream, at + 2)
        if marker in _SOF:
            if at + 10 > len(stream):
                break
            height, width, components = struct.unpack_from(">HHB", stream, at + 5)
            return FrameHeader(width, height, components)
        at += 2 + length
    raise ValueError("the JPEG stream has no frame header (SOF marker) before its scan data")

"""Decoding bombs (issue 18, item 3): tiny files that declare or inflate to far more than they
hold are refused with a clear message before any decoder allocates for them. Each bomb is built
here from a few kB and loaded in a fresh process whose peak memory (ru_maxrss, its DICOM worker
included) is compared with what the bomb would take."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.data.codestreams import FrameHeader, frame_header
from cxr.data.images import MAX_PIXELS, ImageLoadError, load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: dicom_files
import dicom_files as D  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BOUND_MB = 300  # the bombs below would take 700 MB to over a GB
# Loads one file in a fresh process; prints the error and how much its peak memory rose.
# RLIMIT_AS keeps a bomb that does go off (today's main) from taking the machine with it.
LOADER = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2 ** 30, 3 * 2 ** 30))
import numpy, pydicom, PIL.Image, cxr.data.dicom
from cxr.data import dicom_worker
from cxr.data.images import load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_image(sys.argv[1])
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
dicom_worker._close()  # waited for, the worker's peak counts in RUSAGE_CHILDREN
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"error": error, "peak_mb": max(rise, worker) / 1024}))
"""


def load_in_fresh_process(data: bytes, tmp_path: Path, name: str = "bomb.dcm") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", LOADER, str(path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def small_film(syntax: str) -> bytes:
    pixels = D.NOISY12 if syntax not in D.EIGHT_BIT else (D.NOISY12 >> 4).astype(np.uint8)
    return D.encode(D.dataset(pixels, bits=8 if syntax in D.EIGHT_BIT else 12), syntax)


# --- the codestream's own size: JPEG 2000 SIZ, JPEG SOFn, JPEG-LS SOF55 -------------------------

@pytest.mark.parametrize("syntax", ["jpeg2000", "jpeg-baseline", "jpeg-ls", "jpeg-lossless-sv1"])
def test_a_frame_declaring_13000x13000_under_a_small_header_is_refused_before_decoding(
        syntax, tmp_path):
    bomb = D.reframed(small_film(syntax), 13000, 13000)
    assert len(bomb) < 10_000  # header 48x40; the frame says 169 megapixels
    result = load_in_fresh_process(bomb, tmp_path)
    assert result["error"] == (
        f"ImageLoadError: {tmp_path / 'bomb.dcm'}: image too large: 13000x13000 = 169,000,000 "
        f"pixels > limit {MAX_PIXELS:,} (load_image(max_pixels=...))")
    assert result["peak_mb"] < BOUND_MB


@pytest.mark.parametrize("syntax", ["jpeg2000", "jpeg2000-lossy", "jpeg-baseline", "jpeg-ls",
                                    "jpeg-ls-near", "jpeg-lossless", "jpeg-extended"])
def test_a_frame_within_the_limit_must_still_be_the_size_the_header_says(syntax):
    bomb = D.reframed(small_film(syntax), 4000, 3000)  # 12 MP in a 48x40 film
    with pytest.raises(ImageLoadError, match=r"forged\.dcm: the .* frame declares 4000x3000 "
                                             r"pixels with 1 component\(s\), but the DICOM "
                                             r"header says 48x40 with 1: a damaged or forged"):
        load_image(bomb, name="forged.dcm")


def test_a_jp2_wrapped_codestream_is_read_through_its_boxes():
    buf = io.BytesIO()
    Image.fromarray(D.NOISY12).save(buf, format="JPEG2000")  # .jp2: boxes around the codestream
    assert buf.getvalue()[4:8] == b"jP  "
    assert frame_header(buf.getvalue()) == FrameHeader(48, 40, 1)
    with pytest.raises(ValueError, match="not a JPEG, JPEG-LS or JPEG 2000 codestream"):
        frame_header(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="no frame header"):
        frame_header(b"\xff\xd8\xff\xda\x00\x02")


# --- deflate ------------------------------------------------------------------------------------

def test_a_deflated_dicom_that_inflates_to_a_gigabyte_is_refused_while_inflating(tmp_path):
    bomb = D.deflated_bomb(1100 * 2 ** 20)  # 1.1 MB of deflate, 1.15 GB inflated
    assert len(bomb) < 2 ** 21
    result = load_in_fresh_process(bomb, tmp_path)
    limit = 2 * MAX_PIXELS + 16 * 2 ** 20
    assert result["error"] == (
        f"ImageLoadError: {tmp_path / 'bomb.dcm'}: deflated DICOM dataset inflates to more than "
        f"{limit:,} bytes, more than a film of {MAX_PIXELS:,} pixels needs (a decompression "
        "bomb?); refused before inflating it")
    assert result["peak_mb"] < 100  # counted in 1 MB steps, never held


def test_an_ordinary_deflated_dicom_still_loads_exactly():
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    ds = D.dataset(D.NOISY12)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    img = load_image(D.to_bytes(ds))
    np.testing.assert_allclose(img.pixels, D.NOISY12 / 4095.0, rtol=1e-6)
    with pytest.raises(ImageLoadError, match=r"x\.dcm: truncated deflated DICOM: its deflate "
                                             "stream ends before its end marker"):
        load_image(D.to_bytes(ds)[:-500], name="x.dcm")

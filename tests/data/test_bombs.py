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
    bomb = D.deflated_film(1100 * 2 ** 20)  # 1.1 MB of deflate, 1.15 GB inflated
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


# --- PNG, and films at the limit ------------------------------------------------------------------

def test_pillow_refuses_a_png_bomb_from_its_header_at_the_projects_limit(tmp_path):
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # Pillow's own guard: twice this, from the header
    bomb = D.png_flat(13000, 13000)  # 170 KB; 169 MB decoded, 676 MB as float32
    assert len(bomb) < 200_000
    result = load_in_fresh_process(bomb, tmp_path, "bomb.png")
    assert result["error"].startswith(
        f"ImageLoadError: {tmp_path / 'bomb.png'}: image too large (Image size (169000000 "
        f"pixels) exceeds limit of {2 * MAX_PIXELS} pixels")
    assert result["peak_mb"] < 50


def test_a_50_kb_png_at_the_limit_costs_its_float_output_and_little_more(tmp_path):
    """What MAX_PIXELS allows: 7000x7000 (49 MP) from 50 KB decodes, and holds about its
    float32 output (196 MB) at its peak: the 'PNG bomb' of issue 18 is this film."""
    result = load_in_fresh_process(D.png_flat(7000, 7000), tmp_path, "flat.png")
    assert result["error"] is None and result["peak_mb"] < BOUND_MB


def test_a_98_kb_deflated_film_at_the_limit_is_turned_into_float_a_band_at_a_time(tmp_path):
    """7000x7000 16-bit (98 MB of pixels) from 98 KB of deflate: the float64 steps of the
    whole film at once took 1.2 GB; a band at a time, the film holds its pixels, the float32
    output and little more."""
    film = D.deflated_film(7000 * 7000 * 2, 7000, 7000, value=2048)
    assert len(film) < 100_000
    result = load_in_fresh_process(film, tmp_path, "flat.dcm")
    assert result["error"] is None and result["peak_mb"] < 450


# --- the dashboard decodes a few films at once ----------------------------------------------------

def test_the_dashboard_decodes_at_most_max_decodes_uploads_at_once(monkeypatch):
    import threading
    import time

    from cxr.dashboard import analysis
    from cxr.data.images import LoadedImage
    inside, most, lock = [0], [0], threading.Lock()
    full, release = threading.Event(), threading.Event()

    def slow_decode(data, name):  # stands in for a decode that takes a while
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            if inside[0] == analysis.MAX_DECODES:
                full.set()
        release.wait(30)
        with lock:
            inside[0] -= 1
        return LoadedImage(np.zeros((16, 16), np.float32), {"format": "PNG"})

    monkeypatch.setattr(analysis, "load_image", slow_decode)
    threads = [threading.Thread(target=analysis.read_upload, args=(b"x", f"{k}.png"))
               for k in range(6)]
    for thread in threads:
        thread.start()
    assert full.wait(30)
    time.sleep(0.3)  # room for the other four to get in, were they let in
    assert inside[0] == most[0] == analysis.MAX_DECODES == 2
    release.set()
    for thread in threads:
        thread.join(30)
    assert inside[0] == 0 and not any(t.is_alive() for t in threads)

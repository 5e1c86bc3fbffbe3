"""cxr/data/dicom_worker.py: pixel data decoded in a worker process; a worker that crashes or
hangs costs one file (DecoderCrashed), and the next file gets a fresh worker."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxr.data import dicom_worker
from cxr.data.images import ImageLoadError, load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: dicom_files
import dicom_files as D  # noqa: E402

PIXELS = (np.random.default_rng(1).random((24, 32)) * 4095).astype(np.uint16)
# Stand-ins for a decoder that aborts the process (GDCM's uncaught C++ exception) or never ends.
ABORTS = [sys.executable, "-c", "import os, sys; sys.stdin.buffer.read(8); os.abort()"]
HANGS = [sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(8); time.sleep(600)"]


@pytest.fixture
def worker_command(monkeypatch):
    """Replace the worker with another command; the real one comes back afterwards."""
    def use(command):
        if dicom_worker._worker is not None:
            dicom_worker._stop(dicom_worker._worker)
        monkeypatch.setattr(dicom_worker, "command", lambda: command)
    yield use
    if dicom_worker._worker is not None:
        dicom_worker._stop(dicom_worker._worker)


def test_decode_gives_the_first_frame_as_pydicom_does():
    data = D.encode(D.dataset(PIXELS), "jpeg-lossless-sv1")
    np.testing.assert_array_equal(dicom_worker.decode(data), PIXELS)


def test_a_decoder_error_comes_back_as_decode_error_with_its_text():
    with pytest.raises(dicom_worker.DecodeError, match="InvalidDicomError"):
        dicom_worker.decode(b"not a DICOM file at all")


def test_a_crashing_decoder_costs_one_file_and_the_next_gets_a_fresh_worker(worker_command,
                                                                            monkeypatch):
    data = D.encode(D.dataset(PIXELS), "jpeg-ls")
    worker_command(ABORTS)
    with pytest.raises(ImageLoadError, match=r"bad\.dcm: cannot decode the DICOM pixel data "
                                             r"\(JPEG-LS .*the decoder crashed"):
        load_image(data, name="bad.dcm")
    assert dicom_worker._worker is None  # discarded; the real one starts on the next file
    monkeypatch.undo()
    np.testing.assert_allclose(load_image(data).pixels, PIXELS / 4095.0, rtol=1e-6)


def test_a_hanging_decoder_is_stopped_after_the_timeout(worker_command):
    worker_command(HANGS)
    with pytest.raises(dicom_worker.DecoderCrashed, match="more than 1 s .* stopped"):
        dicom_worker.decode(b"x" * 100, timeout=1)
    assert dicom_worker._worker is None


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc: Linux only")
def test_a_decoder_that_asks_for_gigabytes_fails_alone_in_the_capped_worker():
    """A JPEG-LS film whose header and frame both say 60000x60000 (7 GB decoded) in 1 kB: past
    the checks in cxr.data.dicom (called directly here), the worker's memory cap stops it."""
    film = D.encode(D.dataset(PIXELS), "jpeg-ls")
    ds = pydicom.dcmread(io.BytesIO(D.reframed(film, 60000, 60000)))
    ds.Rows = ds.Columns = 60000
    bomb = D.to_bytes(ds)
    with pytest.raises(dicom_worker.DecodeError,
                       match=r"^out of memory: decoding needs more than the DICOM worker's limit "
                             r"of [\d,]+ MiB \(.*6\.71 GiB"):
        dicom_worker.decode(bomb)
    worker = dicom_worker._worker
    limits = Path(f"/proc/{worker.pid}/limits").read_text()
    cap = int(next(line.split()[3] for line in limits.splitlines()
                   if line.startswith("Max address space")))
    assert cap <= 3 * 2 ** 30  # its imports (about 200 MB) and the 2 GiB budget
    # It fails alone: the same worker goes on to decode the next film.
    np.testing.assert_array_equal(dicom_worker.decode(film), PIXELS)
    assert dicom_worker._worker is worker

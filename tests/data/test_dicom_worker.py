"""cxr/data/dicom_worker.py: pixel data decoded in a worker process; a worker that crashes or
hangs costs one file (DecoderCrashed), and the next file gets a fresh worker."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
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

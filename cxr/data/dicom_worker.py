"""Decode DICOM pixel data in a worker process, so that a decoder that crashes costs one file.

GDCM (see cxr.data.dicom) aborts the whole process on some damaged files: a C++ exception it does
not catch ("terminate called after throwing an instance of 'gdcm::Exception'", seen on fuzzed
JPEG data). In this worker such a file fails alone, as an ordinary error, instead of killing the
`cxr predict` run or the dashboard's server. Its address space is capped (MEMORY_BUDGET beyond
its imports), so a decoder that asks for gigabytes fails there alone, with a MemoryError that
comes back as "out of memory: decoding needs more than the DICOM worker's limit of N MiB".

    >>> from cxr.data.dicom_worker import decode, DecoderCrashed
    >>> arr = decode(open("film.dcm", "rb").read())   # frame 0, as pydicom.pixels.pixel_array

The worker is `python -m cxr.data.dicom_worker`, started on first use (about a second) and again
after a crash; one serves the whole process, one file at a time. A plain subprocess rather than
multiprocessing, whose "spawn" would re-import the caller's main script in the worker. Protocol
on its stdin/stdout: a request is an 8-byte length and the file; a reply is b"A" + length + the
array in .npy format, or b"E" + length + the error's text.
"""
from __future__ import annotations

import atexit
import io
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

TIMEOUT_S = 120.0  # a 50 MP film decodes in seconds; minutes means the decoder is stuck
# The worker's address space (RLIMIT_AS) beyond what it holds once its imports are done. The
# largest legitimate request is a file of images.MAX_FILE_BYTES (512 MiB), held as the request
# and again as pydicom's PixelData, and a few copies of a 16-bit frame of MAX_PIXELS (100 MB
# each: the decoder's buffer, the array, the .npy reply): 1.4 GiB. Two leave room for the
# decoders' own work buffers; a decoder that asks for more (a forged size that got past the
# checks in cxr.data.dicom) gets a MemoryError in the worker alone, not the host's memory.
MEMORY_BUDGET = 2 * 2 ** 30
_LENGTH = struct.Struct("<Q")

_lock = threading.Lock()  # the dashboard serves sessions from threads; one file at a time
_worker: subprocess.Popen | None = None


class DecoderCrashed(RuntimeError):
    """The worker died or hung on one file; the next call starts a fresh one."""


class DecodeError(RuntimeError):
    """The decoder raised an error in the worker; its text, as it was there."""


def decode(data: bytes, timeout: float = TIMEOUT_S) -> np.ndarray:
    """The first frame of the DICOM file `data`, decoded by pydicom (its first available plugin)
    in the worker. DecodeError for a decoder's error, DecoderCrashed for a crash or hang."""
    with _lock:
        worker = _started()
        reply: list = []
        reader = threading.Thread(target=lambda: reply.append(_read_reply(worker.stdout)),
                                  daemon=True)
        try:
            worker.stdin.write(_LENGTH.pack(len(data)) + data)
            worker.stdin.flush()
        except OSError:  # it died (at start, or while reading): the reader meets its end
            pass
        reader.start()
        reader.join(timeout)
        if reader.is_alive() or not reply or reply[0] is None:
            hung = reader.is_alive()
            _stop(worker)
            raise DecoderCrashed(
                f"the decoder ran for more than {timeout:g} s on this file's pixel data and was "
                "stopped" if hung else "the decoder crashed on this file's pixel data "
                "(damaged data, or more memory than the worker's limit?)")
    kind, payload = reply[0]
    if kind == b"E":
        raise DecodeError(payload.decode("utf-8", "replace"))
    return np.load(io.BytesIO(payload), allow_pickle=False)


def command() -> list[str]:
    """How the worker is started (the tests replace it with one that crashes or hangs)."""
    return [sys.executable, "-m", "cxr.data.dicom_worker"]


def _started() -> subprocess.Popen:
    global _worker
    if _worker is None or _worker.poll() is not None:
        # The worker imports this package from where the caller found it, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        _worker = subprocess.Popen(command(), env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
    return _worker


@atexit.register
def _close() -> None:
    """At exit: end of input, so the worker's loop ends and it exits by itself."""
    if _worker is not None:
        _worker.stdin.close()
        try:
            _worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _worker.kill()
            _worker.wait()
        _worker.stdout.close()


def _stop(worker: subprocess.Popen) -> None:
    global _worker
    worker.kill()
    worker.wait()
    for pipe in (worker.stdin, worker.stdout):
        pipe.close()
    _worker = None


def _read_reply(stream) -> tuple[bytes, bytes] | None:
    """(kind, payload), or None when the worker is gone (EOF)."""
    kind = stream.read(1)
    header = stream.read(_LENGTH.size) if kind else b""
    if len(header) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    return (kind, payload) if len(payload) == size else None


def _serve() -> None:
    """The worker's loop: requests on stdin, replies on the real stdout. Anything a library
    prints to stdout (fd 1) is sent to stderr instead, so that it cannot break the protocol."""
    import warnings

    import pydicom
    from pydicom import config
    from pydicom.pixels import pixel_array

    config.settings.reading_validation_mode = config.IGNORE  # as in cxr.data.dicom
    warnings.simplefilter("ignore")
    limit = _limit_memory()
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    while len(header := requests.read(_LENGTH.size)) == _LENGTH.size:
        data = requests.read(_LENGTH.unpack(header)[0])
        try:
            buf = io.BytesIO()
            np.save(buf, pixel_array(pydicom.dcmread(io.BytesIO(data)), index=0))
            kind, payload = b"A", buf.getvalue()
        except MemoryError as exc:
            kind, payload = b"E", (f"out of memory: decoding needs more than the DICOM worker's "
                                   f"limit of {limit / 2 ** 20:,.0f} MiB ({exc})").encode()
        except Exception as exc:
            kind, payload = b"E", f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        del data, buf  # not held while the worker waits for the next file
        replies.write(kind + _LENGTH.pack(len(payload)) + payload)
        replies.flush()


def _limit_memory() -> float:
    """Cap this process's address space at what it holds now plus MEMORY_BUDGET (Linux; the
    soft limit, under any hard limit already set); returns the cap (inf where there is none)."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError):
        return float("inf")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = held + MEMORY_BUDGET if hard == resource.RLIM_INFINITY \
        else min(held + MEMORY_BUDGET, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


if __name__ == "__main__":
    _serve()

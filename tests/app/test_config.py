""".streamlit/config.toml: the upload limit is the smallest that the largest chest film needs
(every upload is held in memory, and before sign-in too: README, "Sign-in, roles and deploying
for a team"). tests/browser/test_host.py checks that a real server runs with it."""
from __future__ import annotations

import sys
import tomllib

import numpy as np

from dashboard_env import REPO

sys.path.insert(0, str(REPO / "tests"))  # dicom_files
import dicom_files  # noqa: E402

MIB = 2 ** 20
# The largest chest detectors: 43 x 43 cm at 0.1 mm, e.g. 4320 x 4320 pixels, 16 bits each.
LARGEST_FILM = 4320


def config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def largest_film() -> bytes:
    """A 4320 x 4320 16-bit uncompressed DX film with a 1-bit overlay plane, as a modality
    writes it: the largest upload the dashboard must take."""
    ramp = np.arange(LARGEST_FILM * LARGEST_FILM, dtype=np.uint16).reshape(LARGEST_FILM, -1)
    ds = dicom_files.dataset(ramp, bits=16)
    ds.add_new(0x60000010, "US", LARGEST_FILM)   # OverlayRows
    ds.add_new(0x60000011, "US", LARGEST_FILM)   # OverlayColumns
    ds.add_new(0x60000100, "US", 1)              # OverlayBitsAllocated
    ds.add_new(0x60003000, "OW", bytes(LARGEST_FILM * LARGEST_FILM // 8))  # OverlayData
    return dicom_files.to_bytes(ds)


def test_the_upload_limit_is_the_smallest_the_largest_film_needs():
    limit = config()["server"]["maxUploadSize"]  # MiB: Streamlit counts 1024 * 1024 bytes
    film = largest_film()
    assert len(film) <= limit * MIB, (len(film) / MIB, limit)
    assert limit * MIB < len(film) + 4 * MIB, "more than a header's room to spare"
    assert limit < 200  # Streamlit's default, which these uploads would otherwise get


def test_the_largest_film_is_one_the_app_decodes():
    from cxr.data.images import load_image
    image = load_image(largest_film(), name="largest.dcm")
    assert image.pixels.shape == (LARGEST_FILM, LARGEST_FILM)

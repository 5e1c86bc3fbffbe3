"""Shared fixtures. Real NIH material is read from ../shared/data/nih (or $CXR_NIH_DIR) and
tests that need it skip with the reason when it is absent, as on a user's clone."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never wait on the hub here

REPO = Path(__file__).resolve().parents[1]
NIH_DIR = Path(os.environ.get("CXR_NIH_DIR", REPO.parent / "shared" / "data" / "nih"))


@pytest.fixture(scope="session")
def nih_dir() -> Path:
    """The real ChestX-ray14 metadata and 56 images, or a skip saying why."""
    if not (NIH_DIR / "Data_Entry_2017_v2020.csv.gz").is_file():
        pytest.skip(f"real NIH data not found at {NIH_DIR} (set CXR_NIH_DIR); "
                    "only CI and dev machines have it")
    return NIH_DIR


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL server for the session (tests/pg.py), or a skip saying why."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: pg
    from pg import PgCluster, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL (with its password) of a fresh, empty database on the session's server."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def wl_target(request, tmp_path) -> str:
    """A worklist target on each backend: a new SQLite path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "wl.sqlite")
    return request.getfixturevalue("pg_url")

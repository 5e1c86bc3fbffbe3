"""Fixtures of the PACS tests: a real Orthanc (tests/pacs/orthanc.py), credentials in the
environment, the instances of tests/pacs/instances.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/pacs: orthanc, instances
import orthanc as O  # noqa: E402


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A running Orthanc for the module; tests that stop it start it again."""
    reason = O.missing()
    if reason:
        pytest.skip(reason)
    server = O.Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture()
def pacs_env(monkeypatch):
    """The test server's credentials, as a user would give them: in the environment."""
    for key in ("CXR_DICOMWEB_TOKEN", "CXR_DICOMWEB_AUTH_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CXR_DICOMWEB_USER", O.USER)
    monkeypatch.setenv("CXR_DICOMWEB_PASSWORD", O.PASSWORD)

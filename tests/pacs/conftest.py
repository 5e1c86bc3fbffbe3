"""Fixtures of the PACS tests: a real Orthanc (tests/pacs/orthanc.py), credentials in the
environment, the instances of tests/pacs/instances.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/pacs: orthanc, instances
import orthanc as O


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


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A tiny untrained simple_cnn and its readout (cxr.readout.fit_readout on made-up
    validation labels and the features of noise films, as tests/test_predict.py makes one:
    these tests check the plumbing, not skill)."""
    import numpy as np
    import torch

    from cxr.checkpoint import save_checkpoint
    from cxr.hashing import file_sha256
    from cxr.labels import FINDINGS
    from cxr.models import create_model
    from cxr.readout import fit_readout, save_readout

    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=32)
    ckpt = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", model, {})
    rng = np.random.default_rng(0)
    y = (rng.random((80, 14)) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0
    p = np.clip(0.5 * y + 0.5 * rng.random(y.shape), 0, 1)
    with torch.no_grad():
        feats = model.eval().pool_features(model.forward_features(
            torch.rand(100, 3, 32, 32, generator=torch.Generator().manual_seed(1)))).numpy()
    save_readout(fit_readout(y, p, feats[:30], feats[30:], file_sha256(ckpt), FINDINGS), ckpt)
    return ckpt

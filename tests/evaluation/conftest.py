"""Fixtures for evaluation tests: small synthetic label files in NIH's Data_Entry format.
(Functions are handed out as fixtures: with --import-mode=importlib tests cannot import
conftest.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr.labels import FINDINGS, format_labels

RUN_SIZE = 32  # tiny_run's model input size


def _write_data_entry(path, images, patients, y) -> None:
    """A Data_Entry_2017.csv with the given images, patient ids and (N, 14) labels."""
    pd.DataFrame({"Image Index": images, "Finding Labels": [format_labels(r) for r in y],
                  "Follow-up #": 0, "Patient ID": patients, "Patient Age": 50,
                  "Patient Gender": "M", "View Position": "PA"}).to_csv(path, index=False)


def _correlated_scores(y: np.ndarray, rng: np.random.Generator, strength: float = 0.3,
                      decimals: int = 3) -> np.ndarray:
    """Probabilities in [0, 1] that rank positives higher; rounded so that ties occur."""
    return np.round(np.clip(strength * y + rng.random(y.shape) * (1 - strength), 0, 1), decimals)


@pytest.fixture(scope="session")
def write_data_entry():
    """The function write_data_entry(path, images, patients, y)."""
    return _write_data_entry


@pytest.fixture(scope="session")
def correlated_scores():
    """The function correlated_scores(y, rng, strength=0.3, decimals=3)."""
    return _correlated_scores


@pytest.fixture
def synthetic_labels():
    """(images, patients, y): 300 images of 100 patients, 14 findings, every finding present."""
    rng = np.random.default_rng(7)
    n = 300
    y = (rng.random((n, len(FINDINGS))) < 0.2).astype(np.uint8)
    y[0], y[1] = 1, 0  # both classes in every column
    images = [f"{i:08d}_000.png" for i in range(n)]
    patients = np.repeat(np.arange(100), 3) + 1
    return images, patients, y


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, write_data_entry):
    """(run_dir, data_dir, y): 60 PNGs of 30 patients (train 1-18, val 19-24, test 25-30), a
    saved split and a simple_cnn checkpoint with the contract's meta (untrained: these tests
    check the pipeline, not skill)."""
    import torch
    from PIL import Image

    from cxr.checkpoint import save_checkpoint
    from cxr.data.layout import data_version
    from cxr.data.splits import save_split
    from cxr.models import create_model

    root = tmp_path_factory.mktemp("ckpt")
    data, run = root / "data", root / "run"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 60
    images = [f"{i:08d}_000.png" for i in range(n)]
    patients = np.arange(n) // 2 + 1  # two images per patient
    y = (rng.random((n, len(FINDINGS))) < 0.4).astype(np.uint8)
    for name in images:
        Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8)).save(data / "images" / name)
    write_data_entry(data / "Data_Entry_2017.csv", images, patients, y)
    split = pd.DataFrame({"image": images, "patient": patients,
                          "split": np.where(patients <= 18, "train",
                                            np.where(patients <= 24, "val", "test"))})
    version = data_version(data / "Data_Entry_2017.csv")
    sidecar = save_split(split, run / "split.csv", {
        "strategy": "patient", "seed": 3, "patient_fraction": 1.0, "fractions": [0.6, 0.2, 0.2],
        "data_version": version, "report": {}})
    torch.manual_seed(0)
    model = create_model("simple_cnn", input_size=RUN_SIZE, hidden=16)
    save_checkpoint(run / "best.pt", model, {
        "config": {"data_dir": str(data)}, "data_version": version, "epoch": 1, "phase": "head",
        "metrics": {}, "split": {"path": str(run / "split.csv"), "strategy": "patient",
                                 "seed": 3, "content_hash": sidecar["content_hash"]}})
    return run, data, y

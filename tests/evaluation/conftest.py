"""Fixtures for evaluation tests: small synthetic label files in NIH's Data_Entry format.
(Functions are handed out as fixtures: with --import-mode=importlib tests cannot import
conftest.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr.labels import FINDINGS, format_labels


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

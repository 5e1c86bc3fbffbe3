"""Fixtures for training tests: one tiny synthetic dataset and one uninterrupted reference run
per session, on CPU. (Handed out as fixtures: with --import-mode=importlib tests cannot
import conftest.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]

# 40 patients at 64 px (~115 films); a val fraction of 0.3 so that most findings have both
# positives and negatives in val. Runs: 32 px, batch 8, 4 steps/epoch, 3 epochs.
TINY = dict(patients=40, size=64, seed=0)


def _base_values(data_dir: Path) -> dict:
    return dict(data_dir=str(data_dir), model="simple_cnn", pretrained=False, image_size=32,
                batch_size=8, epochs=3, max_steps_per_epoch=4, workers=0, device="cpu",
                patience=50, split_fractions=[0.5, 0.3, 0.2], seed=0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from cxr.synth.generate import generate_dataset
    out = tmp_path_factory.mktemp("train_data") / "tiny"
    generate_dataset(out, workers=1, **TINY)
    return out


@pytest.fixture
def base_values(tiny_data):
    """TrainConfig keyword values of the reference run (a fresh dict per test)."""
    return _base_values(tiny_data)


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch simple_cnn run (dropout on): what interrupted runs must equal."""
    from cxr.train import TrainConfig, train
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    assert train(TrainConfig(**_base_values(tiny_data)), run_dir) == 0
    return run_dir


@pytest.fixture(scope="session")
def cxr_command():
    """[python, -m, cxr.cli] with a clean environment for subprocess runs."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def popen(*args, **kw):
        return subprocess.Popen([sys.executable, "-m", "cxr.cli", *map(str, args)], env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, **kw)
    popen.env = env
    return popen


@pytest.fixture(scope="session")
def set_args():
    """TrainConfig values -> ['--set', 'k=v', ...] for the command line."""
    def to_args(values: dict) -> list[str]:
        out = []
        for key, value in values.items():
            if key in ("data_dir", "model"):
                continue
            text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else value
            out += ["--set", f"{key}={text}"]
        return out
    return to_args

"""`cxr calibrate` (cxr/evaluation/calibrate.py) on the tiny run of tests/evaluation/conftest.py:
the readout is fitted on validation (and training) films only, never on a test image."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cxr.cli import main
from cxr.labels import FINDINGS
from cxr.readout import load_readout, readout_path


def _calibrate(run, *more):
    return main(["calibrate", "--checkpoint", str(run / "best.pt"), "--passes", "3",
                 "--batch-size", "8", *more])


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tiny run (its data stays shared), so sidecars do not leak."""
    src, _, _ = tiny_run
    shutil.copytree(src, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "*.readout.pt"))
    return tmp_path / "run"


def _split(run) -> dict[str, set[str]]:
    split = pd.read_csv(run / "split.csv")
    return {s: set(split.loc[split["split"] == s, "image"]) for s in ("train", "val", "test")}


def test_the_fit_never_sees_test_images(run, tiny_run, monkeypatch):
    import cxr.evaluation.inference as inference
    import cxr.evaluation.ood as ood

    seen = []  # every image the model is run on, by whichever path
    real_mc, real_features = inference.mc_table, ood.pooled_features
    monkeypatch.setattr(inference, "mc_table",
                        lambda model, rows, **kw: seen.extend(rows["image"]) or
                        real_mc(model, rows, **kw))
    monkeypatch.setattr(ood, "pooled_features",
                        lambda model, rows, *a, **kw: seen.extend(rows["image"]) or
                        real_features(model, rows, *a, **kw))
    assert _calibrate(run) == 0
    split = _split(run)
    assert seen and not set(seen) & split["test"]
    readout = load_readout(run / "best.pt")
    prov = readout.provenance
    assert set(prov["val_images"]) == split["val"] and prov["n_val_images"] == len(split["val"])
    assert set(prov["train_images"]) == split["train"] and prov["n_train_films"] == 36
    assert set(seen) == split["val"] | split["train"]
    assert prov["fitted_on"]["calibration"] == "val" and prov["passes"] == 3
    assert prov["split_seed"] == 3 and prov["data_version"].startswith("Data_Entry_2017.csv")
    # the validation prevalence the site audit compares with (cxr/audit.py): patients 19-24
    y_val = tiny_run[2][36:48]
    assert prov["val_prevalence"] == pytest.approx(dict(zip(FINDINGS, y_val.mean(axis=0))))


def test_writes_one_sidecar_with_every_part(run, capsys):
    assert _calibrate(run, "--ood-share", "0.9", "--method", "platt") == 0
    out = capsys.readouterr().out
    assert "macro ECE" in out and f"wrote {readout_path(run / 'best.pt')}" in out
    readout = load_readout(run / "best.pt")
    assert readout.labels == FINDINGS and readout.calibration.method == "platt"
    assert readout.ood.share == 0.9 and readout.ood.precision.shape == (128, 128)
    assert set(readout.points) == {"youden", "sensitivity", "specificity"}
    val_fit = readout.provenance["val_fit"]
    assert val_fit["nll_after"] <= val_fit["nll_before"] + 1e-9  # fitted to lower it, in-sample


def test_caps_the_training_films_with_a_seeded_subsample(run):
    assert _calibrate(run, "--max-train-films", "10", "--seed", "2") == 0
    first = load_readout(run / "best.pt").provenance["train_images"]
    assert len(first) == 10 and set(first) <= _split(run)["train"]
    assert _calibrate(run, "--max-train-films", "10", "--seed", "2") == 0
    assert load_readout(run / "best.pt").provenance["train_images"] == first


def test_bad_arguments_are_errors(run, capsys):
    assert _calibrate(run, "--ood-share", "1.5") == 1
    assert "--ood-share 1.5" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(run / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not readout_path(run / "best.pt").exists()

"""`cxr evaluate`: external predictions mode end to end, and its input errors."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr.cli import main
from cxr.evaluation.predictions import PROB_COLUMNS, STD_COLUMNS, predictions_frame
from cxr.labels import FINDINGS


@pytest.fixture
def external(tmp_path, synthetic_labels, write_data_entry, correlated_scores):
    """make(std=True, extra=None, labels=synthetic_labels) -> (prob, y): labels + preds.csv."""
    def make(std=True, extra=None, labels=synthetic_labels):
        return _external(tmp_path, labels, write_data_entry, correlated_scores, std, extra)
    return make


def _external(tmp_path, labels, write_data_entry, correlated_scores, std, extra):
    images, patients, y = labels
    write_data_entry(tmp_path / "Data_Entry_2017.csv", images, patients, y)
    rng = np.random.default_rng(0)
    prob = correlated_scores(y, rng)
    frame = predictions_frame(images, prob, rng.random(y.shape) * 0.2 if std else None, None)
    if extra is not None:
        frame = extra(frame)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    return prob, y


def _evaluate(tmp_path, *more):
    return main(["evaluate", "--predictions", str(tmp_path / "preds.csv"), "--labels",
                 str(tmp_path / "Data_Entry_2017.csv"), "--out", str(tmp_path / "eval"),
                 "--bootstrap", "200", *more])


def test_external_mode_writes_all_outputs(tmp_path, external):
    prob, y = external()
    assert _evaluate(tmp_path) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for k, name in enumerate(FINDINGS):
        f = metrics["per_finding"][name]
        assert f["auc"] == pytest.approx(roc_auc_score(y[:, k], prob[:, k]))
        assert f["auc_ci"][0] <= f["auc"] <= f["auc_ci"][1]
        assert f["n_pos"] == int(y[:, k].sum()) and f["threshold"] is None  # no validation given
    assert metrics["macro_auc_ci"][0] < metrics["macro_auc"] < metrics["macro_auc_ci"][1]
    assert metrics["n_images"] == 300 and metrics["n_patients"] == 100
    assert metrics["excluded_findings"] == []
    assert set(metrics["selective"]) == {"0.0", "0.1", "0.2", "0.3"}
    assert metrics["data_version"].startswith("Data_Entry_2017.csv sha256:")
    roc = pd.read_csv(tmp_path / "eval" / "roc.csv")
    cal = pd.read_csv(tmp_path / "eval" / "calibration.csv")
    assert set(roc["finding"]) == set(FINDINGS)
    assert (cal.groupby("finding")["count"].sum() == 300).all()


def test_validation_predictions_choose_thresholds(tmp_path, synthetic_labels, external,
                                                 write_data_entry, correlated_scores):
    images, patients, y = synthetic_labels
    external(labels=(images[:200], patients[:200], y[:200]))
    write_data_entry(tmp_path / "Data_Entry_2017.csv", images, patients, y)  # all 300 labelled
    val_prob = correlated_scores(y[200:], np.random.default_rng(5))
    predictions_frame(images[200:], val_prob, None, None).to_csv(tmp_path / "val.csv", index=False)
    assert _evaluate(tmp_path, "--val-predictions", str(tmp_path / "val.csv")) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["thresholds_from"] == "validation"
    assert all(0 <= metrics["per_finding"][f]["sensitivity"] <= 1 for f in FINDINGS)


def test_without_std_columns_selective_is_null(tmp_path, external):
    external(std=False)
    assert _evaluate(tmp_path) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["selective"] is None and metrics["macro_auc"] > 0.6


def test_label_free_images_are_an_error(tmp_path, external, capsys):
    def add_unlabelled(frame):
        row = frame.iloc[[0]].assign(**{"Image Index": "unlabelled_001.png"})
        return pd.concat([frame, row])
    external(extra=add_unlabelled)
    assert _evaluate(tmp_path) == 1
    err = capsys.readouterr().err
    assert "unlabelled_001.png" in err and "never scored" in err
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_missing_prob_columns_are_named(tmp_path, external, capsys):
    external(extra=lambda f: f.drop(columns=PROB_COLUMNS[3:5]))
    assert _evaluate(tmp_path) == 1
    err = capsys.readouterr().err
    assert "prob_Infiltration" in err and "prob_Mass" in err


def test_partial_std_columns_and_bad_values_are_named(tmp_path, external, capsys):
    external(extra=lambda f: f.drop(columns=STD_COLUMNS[0]))
    assert _evaluate(tmp_path) == 1
    assert "std_Atelectasis" in capsys.readouterr().err
    def bad_value(frame):
        frame.loc[7, "prob_Hernia"] = 1.5
        return frame
    external(extra=bad_value)
    assert _evaluate(tmp_path) == 1
    err = capsys.readouterr().err
    assert "line 9" in err and "prob_Hernia" in err and "00000007_000.png" in err


def test_images_list_must_be_predicted(tmp_path, external, capsys):
    external()
    (tmp_path / "list.txt").write_text("00000001_000.png\nnot_predicted.png\n")
    assert _evaluate(tmp_path, "--images", str(tmp_path / "list.txt")) == 1
    assert "not_predicted.png" in capsys.readouterr().err


def test_reproduces_sklearn_aucs_on_nih_test_list(tmp_path, nih_dir):
    """Scores for the 25,596 official test images, correlated with the real v2020 labels."""
    labels = pd.read_csv(nih_dir / "Data_Entry_2017_v2020.csv.gz").set_index("Image Index")
    test = [n.strip() for n in (nih_dir / "test_list.txt").read_text().split() if n.strip()]
    text = labels.loc[test, "Finding Labels"]
    y = np.stack([text.str.split("|").apply(lambda v, f=f: f in v) for f in FINDINGS], 1)
    rng = np.random.default_rng(11)
    prob = np.clip(0.15 * y + 0.85 * rng.random(y.shape), 0, 1)
    shuffled = rng.permutation(len(test))  # row order must not matter
    frame = predictions_frame(np.array(test)[shuffled], prob[shuffled], None, None)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    expected = {f: roc_auc_score(y[:, k], prob[:, k]) for k, f in enumerate(FINDINGS)}
    assert main(["evaluate", "--predictions", str(tmp_path / "preds.csv"), "--labels",
                 str(nih_dir / "Data_Entry_2017_v2020.csv.gz"), "--images",
                 str(nih_dir / "test_list.txt"), "--out", str(tmp_path / "eval"),
                 "--bootstrap", "20"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for f in FINDINGS:
        assert round(metrics["per_finding"][f]["auc"], 4) == round(expected[f], 4)
    assert metrics["n_images"] == 25596 and metrics["n_patients"] == 2797

"""`cxr evaluate --checkpoint` on the tiny run of tests/evaluation/conftest.py (`tiny_run`)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cxr.cli import main
from cxr.evaluation.predictions import PROB_COLUMNS, STD_COLUMNS
from cxr.labels import FINDINGS

SIZE = 32  # the tiny_run fixture's model input (tests/evaluation/conftest.py)


def _evaluate(run, *more):
    return main(["evaluate", "--checkpoint", str(run / "best.pt"), "--passes", "5",
                 "--batch-size", "8", "--bootstrap", "50", *more])


def test_scores_the_runs_test_split(tiny_run):
    run, data, y = tiny_run
    assert _evaluate(run) == 0
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv")
    test_images = [f"{i:08d}_000.png" for i in range(48, 60)]  # patients 25-30
    assert preds["Image Index"].tolist() == test_images
    assert list(preds.columns) == ["Image Index", *PROB_COLUMNS, *STD_COLUMNS, "uncertain",
                                   "uncertainty", "uncertainty_rule"]
    std = preds[STD_COLUMNS].to_numpy()  # the checkpoint names no rule: the report's, mean
    assert metrics["uncertainty_rule"] == "mean" and (preds["uncertainty_rule"] == "mean").all()
    np.testing.assert_allclose(preds["uncertainty"], std.mean(axis=1), rtol=1e-12)
    assert (preds["uncertain"] == (std.mean(axis=1) > 0.1)).all()
    assert (preds[STD_COLUMNS].to_numpy() > 0).any()  # MC dropout really sampled
    assert metrics["n_images"] == 12 and metrics["n_patients"] == 6 and metrics["passes"] == 5
    assert metrics["split"] == "test" and metrics["strategy"] == "patient"
    assert metrics["split_seed"] == 3 and metrics["data_version"].startswith("Data_Entry_2017.csv")
    assert metrics["model"]["name"] == "simple_cnn" and len(metrics["checkpoint_sha256"]) == 64
    assert metrics["thresholds_from"] == "validation"
    for k, f in enumerate(FINDINGS):  # thresholds chosen on val exist where val has both classes
        val_y = y[36:48, k]
        assert (metrics["per_finding"][f]["threshold"] is None) == (val_y.min() == val_y.max())
    assert set(metrics["selective"]) == {"0.0", "0.1", "0.2", "0.3"}
    assert 0 <= metrics["referral_rate_at_threshold"] <= 1
    assert (out / "roc.csv").is_file() and (out / "calibration.csv").is_file()


def test_uncertainty_rule_flag_overrides_and_is_recorded(tiny_run, tmp_path, capsys):
    run, _, _ = tiny_run
    assert _evaluate(run, "--uncertainty-rule", "any", "--std-threshold", "0.01",
                     "--out", str(tmp_path / "any")) == 0
    assert "uncertainty rule any (uncertain when some finding's MC-dropout std > 0.01), from " \
           "requested" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "any" / "metrics.json").read_text())
    preds = pd.read_csv(tmp_path / "any" / "predictions.csv")
    std = preds[STD_COLUMNS].to_numpy()
    assert metrics["uncertainty_rule"] == "any" and (preds["uncertainty_rule"] == "any").all()
    np.testing.assert_allclose(preds["uncertainty"], std.max(axis=1), rtol=1e-12)
    assert metrics["referral_rate_at_threshold"] == pytest.approx((std.max(axis=1) > 0.01).mean())


def test_unknown_rule_is_refused(tiny_run, capsys):
    run, _, _ = tiny_run
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(run / "best.pt"), "--uncertainty-rule", "max"])
    assert "invalid choice: 'max'" in capsys.readouterr().err


def test_same_seed_same_predictions(tiny_run, tmp_path):
    run, _, _ = tiny_run
    for name in ("a", "b"):
        assert _evaluate(run, "--seed", "4", "--out", str(tmp_path / name)) == 0
    a, b = (pd.read_csv(tmp_path / n / "predictions.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


def test_refuses_train_split(tiny_run, capsys):
    run, _, _ = tiny_run
    assert _evaluate(run, "--split", "train", "--out", str(run / "x")) == 1
    assert "training images are never evaluated" in capsys.readouterr().err


def test_refuses_edited_split_and_other_data(tiny_run, tmp_path, capsys):
    run, data, _ = tiny_run
    edited = tmp_path / "run"
    shutil.copytree(run, edited, ignore=shutil.ignore_patterns("eval"))
    (edited / "split.csv").write_text((edited / "split.csv").read_text().replace(",test", ",val"))
    assert _evaluate(edited) == 1
    assert "content_hash" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(data, other)
    with open(other / "Data_Entry_2017.csv", "a") as f:
        f.write("99999999_000.png,No Finding,0,999,50,M,PA\n")
    assert _evaluate(run, "--data", str(other), "--out", str(tmp_path / "o")) == 1
    assert "data version" in capsys.readouterr().err


def test_pointing_game_hook(tiny_run, tmp_path, monkeypatch):
    import cxr.explain

    run, data, _ = tiny_run
    other = tmp_path / "data"
    shutil.copytree(data, other)
    (other / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000050_000.png,Infiltrate,1,2,10,12\n00000001_000.png,Mass,1,2,3,4\n")
    calls = []

    def fake(model, images, boxes_by_image, image_size, findings):
        calls.append((images, boxes_by_image, image_size))
        return {"Infiltration": {"hits": 1, "n": 1, "hit_rate": 1.0, "random_baseline": 0.06}}
    monkeypatch.setattr(cxr.explain, "pointing_game", fake)
    assert _evaluate(run, "--data", str(other), "--out", str(tmp_path / "e"),
                     "--pointing-game") == 0
    (images, boxes, size), = calls
    assert [(tuple(x.shape), n, wh) for x, n, wh in images] == [((3, SIZE, SIZE),
                                                                  "00000050_000.png", (40, 48))]
    assert boxes == {"00000050_000.png": [("Infiltration", 1.0, 2.0, 10.0, 12.0)]}  # test only
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["pointing_game"]["Infiltration"]["hit_rate"] == 1.0


def test_pointing_game_with_cxr_explain(tiny_run, tmp_path):
    """The real cxr.explain.pointing_game behind the hook: hit rates land in metrics.json."""
    pytest.importorskip("pytorch_grad_cam")
    run, data, _ = tiny_run
    other = tmp_path / "data"
    shutil.copytree(data, other)
    (other / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000050_000.png,Mass,5,5,20,20\n")
    assert _evaluate(run, "--data", str(other), "--out", str(tmp_path / "e"),
                     "--pointing-game") == 0
    game = json.loads((tmp_path / "e" / "metrics.json").read_text())["pointing_game"]
    assert set(game) == {"Mass"} and game["Mass"]["n"] == 1
    assert game["Mass"]["random_baseline"] == pytest.approx(20 * 20 / (40 * 48), abs=0.05)

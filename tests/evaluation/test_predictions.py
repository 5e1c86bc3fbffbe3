"""cxr/evaluation/predictions.py: the predictions CSV written and read back, and every kind of
bad file named by file, line and column."""
import numpy as np
import pandas as pd
import pytest

from cxr.evaluation.predictions import (IMAGE_COLUMN, PROB_COLUMNS, READOUT_COLUMNS, STD_COLUMNS,
                                        ReadoutColumns, predictions_frame, read_predictions,
                                        write_csv)


def _frame(n=5, std=True, seed=0, readout=False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    prob = rng.random((n, 14))
    sd = np.full((n, 14), 0.01)
    sd[1, 3] = 0.3  # image 1 is uncertain by the rule
    return predictions_frame([f"img{i}.png" for i in range(n)], prob, sd if std else None, None,
                             readout=_readout(n, rng) if readout else None)


def _readout(n, rng) -> ReadoutColumns:
    calls = np.array(["positive", "negative", "uncertain", "n/a"], dtype=object)
    return ReadoutColumns(rng.random((n, 14)), calls[rng.integers(0, 4, (n, 14))], "youden",
                          rng.random(n) * 20, np.arange(n) % 2 == 0)


def test_readout_columns_round_trip_after_the_rule_and_before_source(tmp_path):
    frame = _frame(readout=True)
    assert list(frame.columns)[-len(READOUT_COLUMNS):] == READOUT_COLUMNS
    frame.assign(source="/x.png").to_csv(tmp_path / "p.csv", index=False)
    r = read_predictions(tmp_path / "p.csv").readout
    np.testing.assert_allclose(r.calibrated, frame[[c for c in frame if c.startswith("cal_")]])
    assert r.calls.tolist() == frame[[c for c in frame if c.startswith("call_")]].values.tolist()
    assert r.operating_point == "youden" and r.ood.tolist() == [True, False, True, False, True]
    np.testing.assert_allclose(r.ood_score, frame["ood_score"])
    # a checkpoint without a readout may leave the columns empty: no readout, not an error
    frame[READOUT_COLUMNS] = ""
    frame.to_csv(tmp_path / "empty.csv", index=False)
    assert read_predictions(tmp_path / "empty.csv").readout is None
    assert read_predictions(_write(_frame(), tmp_path)).readout is None  # or leave them out


def _write(frame, tmp_path):
    frame.to_csv(tmp_path / "q.csv", index=False)
    return tmp_path / "q.csv"


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["ood"]), r"readout columns .* are all-or-none; missing ood"),
    (lambda f: f.assign(call_Mass=["positive", "maybe", "negative", "n/a", "uncertain"]),
     r"line 3 \(img1\.png\): call_Mass 'maybe' is not one of positive, negative"),
    (lambda f: f.assign(operating_point="best"), r"line 2 \(img0\.png\): operating_point 'best'"),
    (lambda f: f.assign(operating_point=["youden"] * 4 + ["sensitivity"]),
     r"line 6 \(img4\.png\): operating_point 'sensitivity' .* one operating point"),
    (lambda f: f.assign(ood_score=[1, 2, -1, 3, 4]),
     r"line 4 \(img2\.png\): ood_score -1 is not a number >= 0"),
    (lambda f: f.assign(ood=["true", "", "false", "true", "true"]),
     r"line 3 \(img1\.png\): ood '' is not true/false"),
    (lambda f: f.assign(cal_Edema=[0.1, 0.2, 0.3, 2.0, 0.5]),
     r"line 5 \(img3\.png\): cal_Edema 2\.0 is not a number in \[0, 1\]"),
])
def test_bad_readout_columns_name_line_and_column(tmp_path, change, message):
    frame = _frame(readout=True)
    frame["ood"] = frame["ood"].map({True: "true", False: "false"})
    change(frame).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ValueError, match=message):
        read_predictions(tmp_path / "p.csv")


def test_round_trip_keeps_order_values_and_flags(tmp_path):
    rng = np.random.default_rng(1)
    prob, std = rng.random((4, 14)), rng.random((4, 14)) * 0.2
    flags = np.array([True, False, True, False])
    frame = predictions_frame(["b.png", "a.png", "d.png", "c.png"], prob, std, flags)
    assert list(frame.columns) == [IMAGE_COLUMN, *PROB_COLUMNS, *STD_COLUMNS, "uncertain"]
    write_csv(frame, tmp_path / "p.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]  # no temp file left behind
    preds = read_predictions(tmp_path / "p.csv")
    assert preds.images.tolist() == ["b.png", "a.png", "d.png", "c.png"]
    np.testing.assert_allclose(preds.prob, prob)
    np.testing.assert_allclose(preds.std, std)
    assert preds.uncertain.tolist() == flags.tolist() and preds.source is None


def test_without_flag_or_std_the_rule_decides(tmp_path):
    frame = _frame()  # image 1: one std of 0.3, the rest 0.01 (mean 0.031)
    frame.to_csv(tmp_path / "std.csv", index=False)
    preds = read_predictions(tmp_path / "std.csv")  # no rule column: the report's rule
    assert preds.rule == "mean" and not preds.uncertain.any()
    np.testing.assert_allclose(preds.score, preds.std.mean(axis=1))
    frame.assign(uncertainty_rule="any").to_csv(tmp_path / "any.csv", index=False)
    preds = read_predictions(tmp_path / "any.csv")
    assert preds.rule == "any" and preds.uncertain.tolist() == [False, True, False, False, False]
    np.testing.assert_allclose(preds.score, preds.std.max(axis=1))
    # an `uncertain` column without a rule column was written when the rule was per finding
    frame["uncertain"] = ["true", "", "0", "1", "False"]  # an empty cell: the rule
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    preds = read_predictions(tmp_path / "mixed.csv")
    assert preds.rule == "any" and preds.uncertain.tolist() == [True, True, False, True, False]
    _frame(std=False).to_csv(tmp_path / "external.csv", index=False)
    external = read_predictions(tmp_path / "external.csv")
    assert external.std is None and not external.uncertain.any()
    assert external.score is None and external.rule is None


def test_score_and_rule_columns_round_trip(tmp_path):
    std = np.full((3, 14), 0.05)
    std[0, 0], std[1] = 0.9, 0.2
    for rule, score in (("mean", std.mean(axis=1)), ("any", std.max(axis=1))):
        frame = predictions_frame(["a", "b", "c"], np.full((3, 14), 0.5), std, score > 0.1,
                                  score, rule)
        assert list(frame.columns)[-3:] == ["uncertain", "uncertainty", "uncertainty_rule"]
        write_csv(frame, tmp_path / f"{rule}.csv")
        preds = read_predictions(tmp_path / f"{rule}.csv")
        assert preds.rule == rule and preds.uncertain.tolist() == (score > 0.1).tolist()
        np.testing.assert_allclose(preds.score, score, rtol=1e-12)
    with pytest.raises(ValueError, match="needs its rule"):
        predictions_frame(["a"], np.zeros((1, 14)), np.zeros((1, 14)), None, np.zeros(1))


def test_source_column_and_stray_whitespace(tmp_path):
    frame = _frame(n=2)
    frame["source"] = ["/films/img0.png", ""]
    frame[IMAGE_COLUMN] = [" img0.png", "img1.png "]
    frame.rename(columns={"prob_Mass": " prob_Mass "}).to_csv(tmp_path / "p.csv", index=False)
    preds = read_predictions(tmp_path / "p.csv")
    assert preds.images.tolist() == ["img0.png", "img1.png"]
    assert preds.source.tolist() == ["/films/img0.png", None]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["prob_Mass", "prob_Hernia"]),
     r"p\.csv: missing column\(s\) prob_Mass, prob_Hernia"),
    (lambda f: f.drop(columns=["std_Edema"]), r"std_ columns are all-or-none; missing std_Edema"),
    (lambda f: f.assign(**{IMAGE_COLUMN: ["img0.png", "", "b", "c", "d"]}),
     r"p\.csv line 3: empty 'Image Index'"),
    (lambda f: f.assign(**{IMAGE_COLUMN: ["a", "b", "a", "c", "b"]}),
     r"p\.csv line 4: image 'a' is predicted more than once \(2 repeated"),
    (lambda f: f.assign(prob_Mass=[0.1, 0.2, 1.5, 0.3, 0.4]),
     r"p\.csv line 4 \(img2\.png\): prob_Mass 1\.5 is not a number in \[0, 1\]"),
    (lambda f: f.assign(std_Hernia=["0.1", "x", "0.1", "0.1", "0.1"]),
     r"line 3 \(img1\.png\): std_Hernia x is not a number"),
    (lambda f: f.assign(prob_Edema=["0.1", "0.1", "0.1", "", "0.1"]),
     r"line 5 \(img3\.png\): prob_Edema \(empty\) is not a number"),
    (lambda f: f.assign(uncertain=["yes", "", "", "", ""]),
     r"line 2 \(img0\.png\): uncertain 'yes' is not true/false"),
    (lambda f: f.assign(uncertainty_rule=["mean", "mean", "max", "mean", "mean"]),
     r"line 4 \(img2\.png\): uncertainty_rule 'max' is not one of mean, any"),
    (lambda f: f.assign(uncertainty_rule=["mean", "mean", "any", "mean", "mean"]),
     r"line 4 \(img2\.png\): uncertainty_rule 'any' differs from 'mean' above"),
    (lambda f: f.assign(uncertainty=[0.01, 0.3, 0.01, 0.01, 0.01], uncertainty_rule="mean"),
     r"line 3 \(img1\.png\): uncertainty 0\.3 is not the 'mean' score of its std_ columns"),
    (lambda f: f.drop(columns=STD_COLUMNS).assign(uncertainty=0.1),
     r"an 'uncertainty' column needs the std_ columns"),
])
def test_bad_files_name_file_line_and_column(tmp_path, change, message):
    change(_frame()).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ValueError, match=message):
        read_predictions(tmp_path / "p.csv")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.csv does not exist"):
        read_predictions(tmp_path / "none.csv")

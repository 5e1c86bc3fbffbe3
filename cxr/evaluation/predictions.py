"""The predictions CSV (ARCHITECTURE.md, "Predictions CSV"): write it, and read one back strictly.

Columns: `Image Index`, `prob_<Finding>` x14 (MC mean), `std_<Finding>` x14 (optional for
external models: all or none), `uncertain`, `uncertainty` (the image's score under the rule) and
`uncertainty_rule` ("mean" or "any", cxr.uncertainty: one rule per file); then, when the
checkpoint has a readout (cxr/readout.py), the READOUT_COLUMNS, all or none: `cal_<Finding>` x14
(calibrated MC mean), `call_<Finding>` x14 (positive / negative / uncertain / n/a),
`operating_point` (youden / sensitivity / specificity, one per file), `ood_score` and `ood`
(true/false); `cxr predict` adds `source`. Reading checks every column and value and names the
problem (file, column, line, value): a scorer must never guess.
`cxr evaluate`, `cxr compare` and the worklist import all read through `read_predictions`.

    >>> from cxr.evaluation.predictions import read_predictions
    >>> preds = read_predictions("runs/fusion/eval/predictions.csv")
    >>> preds.images, preds.prob.shape, preds.std is None
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.atomic import atomic_open
from cxr.evaluation.operating_points import POINTS
from cxr.labels import FINDINGS
from cxr.readout import CALLS
from cxr.uncertainty import DEFAULT_RULE, UNCERTAINTY_RULES, image_uncertainty

IMAGE_COLUMN = "Image Index"
PROB_COLUMNS = [f"prob_{f}" for f in FINDINGS]
STD_COLUMNS = [f"std_{f}" for f in FINDINGS]
SCORE_COLUMN, RULE_COLUMN = "uncertainty", "uncertainty_rule"
CAL_COLUMNS = [f"cal_{f}" for f in FINDINGS]
CALL_COLUMNS = [f"call_{f}" for f in FINDINGS]
POINT_COLUMN, OOD_SCORE_COLUMN, OOD_COLUMN = "operating_point", "ood_score", "ood"
READOUT_COLUMNS = [*CAL_COLUMNS, *CALL_COLUMNS, POINT_COLUMN, OOD_SCORE_COLUMN, OOD_COLUMN]
TRUE, FALSE = ("1", "1.0", "true"), ("0", "0.0", "false")


@dataclass
class ReadoutColumns:
    """What a checkpoint's readout adds to each film (cxr.readout.annotate / Readout.apply)."""
    calibrated: np.ndarray  # (N, 14) calibrated MC-mean probability
    calls: np.ndarray       # (N, 14) str: positive / negative / uncertain / n/a
    operating_point: str    # the point the calls were made at
    ood_score: np.ndarray   # (N,) Mahalanobis distance to the training features
    ood: np.ndarray         # (N,) bool: the score is above the readout's threshold

    @classmethod
    def of(cls, output, point: str) -> "ReadoutColumns":
        """From a cxr.readout.ReadoutOutput (calls at every point) and the chosen point."""
        return cls(output.calibrated, np.asarray(output.calls[point], dtype=object), point,
                   output.ood_score, output.ood_flag)


@dataclass
class Predictions:
    images: np.ndarray  # (N,) object, file names
    prob: np.ndarray  # (N, 14) float
    std: np.ndarray | None  # (N, 14) float, or None when the file has no std_ columns
    uncertain: np.ndarray | None = None  # (N,) bool: the file's flag, else by `rule`
    source: np.ndarray | None = None  # (N,) object: each film's path (None: not given)
    score: np.ndarray | None = None  # (N,) the image uncertainty under `rule` (None: no std)
    rule: str | None = None  # the file's uncertainty rule (None: no std)
    readout: ReadoutColumns | None = None  # None: the file has no (or only empty) readout columns


def predictions_frame(images, prob: np.ndarray, std: np.ndarray | None,
                      uncertain: np.ndarray | None, score: np.ndarray | None = None,
                      rule: str | None = None,
                      readout: ReadoutColumns | None = None) -> pd.DataFrame:
    """Arrays -> the CSV's DataFrame, columns in contract order (score needs its rule)."""
    df = pd.DataFrame({IMAGE_COLUMN: list(images)})
    df[PROB_COLUMNS] = np.asarray(prob, dtype=float)
    if std is not None:
        df[STD_COLUMNS] = np.asarray(std, dtype=float)
    if uncertain is not None:
        df["uncertain"] = np.asarray(uncertain).astype(bool)
    if score is not None:
        if rule not in UNCERTAINTY_RULES:
            raise ValueError(f"an uncertainty score needs its rule, one of {UNCERTAINTY_RULES}")
        df[SCORE_COLUMN] = np.asarray(score, dtype=float)
        df[RULE_COLUMN] = rule
    if readout is not None:
        if readout.operating_point not in POINTS:
            raise ValueError(f"operating point {readout.operating_point!r} is not one of {POINTS}")
        df[CAL_COLUMNS] = np.asarray(readout.calibrated, dtype=float)
        df[CALL_COLUMNS] = np.asarray(readout.calls, dtype=object)
        df[POINT_COLUMN] = readout.operating_point
        df[OOD_SCORE_COLUMN] = np.asarray(readout.ood_score, dtype=float)
        df[OOD_COLUMN] = np.asarray(readout.ood).astype(bool)
    return df


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Atomic CSV write (temp file + rename): a reader never sees half a table."""
    with atomic_open(path, "w", newline="") as f:
        df.to_csv(f, index=False, lineterminator="\n")
    return Path(path)


def _refuse(df: pd.DataFrame, bad, path: Path, problem) -> None:
    """If `bad` ((N,) or (N, C) bool) holds anywhere, a ValueError naming the file, line and
    image of its first True, then problem(row, column)."""
    bad = np.asarray(bad)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad.reshape(len(bad), -1)))
        raise ValueError(f"{path} line {row + 2} ({df[IMAGE_COLUMN].iloc[row]}): "
                         f"{problem(row, col)}")


def _numeric(df: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    values = df[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    _refuse(df, ~np.isfinite(values) | (values < 0) | (values > 1), path, lambda r, c:
            f"{columns[c]} {df[columns[c]].iloc[r] or '(empty)'} is not a number in [0, 1]")
    return values


def _rule(df: pd.DataFrame, path: Path) -> str:
    """The file's uncertainty rule: its `uncertainty_rule` column (one known rule for every
    row); without it, a filled `uncertain` column was written before rules existed, under the
    per-finding rule of that time ("any"); otherwise the default (the report's "mean")."""
    if RULE_COLUMN not in df.columns:
        filled = "uncertain" in df.columns and (df["uncertain"].str.strip() != "").any()
        return "any" if filled else DEFAULT_RULE
    values = df[RULE_COLUMN].str.strip()
    _refuse(df, ~values.isin(UNCERTAINTY_RULES), path, lambda r, _: f"{RULE_COLUMN} "
            f"{values.iloc[r]!r} is not one of {', '.join(UNCERTAINTY_RULES)}")
    if values.nunique() > 1:
        _refuse(df, values != values.iloc[0], path, lambda r, _: f"{RULE_COLUMN} "
                f"{values.iloc[r]!r} differs from {values.iloc[0]!r} above; a file holds one rule")
    return values.iloc[0] if len(values) else DEFAULT_RULE


def _score(df: pd.DataFrame, std: np.ndarray, rule: str, path: Path) -> np.ndarray:
    """The image scores of `std` under `rule`; a file's own `uncertainty` column must agree."""
    score = image_uncertainty(std, rule)[0]
    if SCORE_COLUMN in df.columns:
        stated = _numeric(df, [SCORE_COLUMN], path)[:, 0]
        _refuse(df, np.abs(stated - score) > 1e-6, path, lambda r, _: f"{SCORE_COLUMN} "
                f"{stated[r]} is not the {rule!r} score of its std_ columns ({score[r]:.6g})")
    return score


def _flags(df: pd.DataFrame, rule_flags: np.ndarray | None, path: Path) -> np.ndarray:
    """The `uncertain` column (true/false/1/0); an empty cell or no column: the rule's flag
    (never uncertain without std)."""
    rule = rule_flags if rule_flags is not None else np.zeros(len(df), bool)
    if "uncertain" not in df.columns:
        return rule
    text = df["uncertain"].str.strip().str.lower()
    _refuse(df, ~text.isin(["", *TRUE, *FALSE]), path,
            lambda r, _: f"uncertain {df['uncertain'].iloc[r]!r} is not true/false")
    return np.where(text == "", rule, text.isin(TRUE))


def _readout(df: pd.DataFrame, path: Path) -> ReadoutColumns | None:
    """The readout columns: none, or all of them; all empty (a checkpoint without a readout)
    reads as none, a partly empty or wrong value is an error naming its line and column."""
    missing = [c for c in READOUT_COLUMNS if c not in df.columns]
    if len(missing) == len(READOUT_COLUMNS):
        return None
    if missing:
        raise ValueError(f"{path}: the readout columns (cal_, call_, {POINT_COLUMN}, "
                         f"{OOD_SCORE_COLUMN}, {OOD_COLUMN}) are all-or-none; missing "
                         f"{', '.join(missing)}")
    text = df[READOUT_COLUMNS].apply(lambda c: c.str.strip())
    if (text == "").all(axis=None):
        return None
    calls = text[CALL_COLUMNS]
    _refuse(df, ~calls.isin(CALLS), path, lambda r, c: f"{CALL_COLUMNS[c]} "
            f"{calls.iat[r, c]!r} is not one of {', '.join(CALLS)}")
    points = text[POINT_COLUMN]
    _refuse(df, ~points.isin(POINTS) | (points != points.iloc[0]), path, lambda r, _:
            f"{POINT_COLUMN} {points.iloc[r]!r} is not one of {', '.join(POINTS)}, or differs "
            f"from {points.iloc[0]!r} above; a file holds one operating point")
    score = pd.to_numeric(text[OOD_SCORE_COLUMN], errors="coerce").to_numpy(dtype=float)
    _refuse(df, ~np.isfinite(score) | (score < 0), path, lambda r, _: f"{OOD_SCORE_COLUMN} "
            f"{text[OOD_SCORE_COLUMN].iloc[r] or '(empty)'} is not a number >= 0")
    flag = text[OOD_COLUMN].str.lower()
    _refuse(df, ~flag.isin([*TRUE, *FALSE]), path,
            lambda r, _: f"{OOD_COLUMN} {df[OOD_COLUMN].iloc[r]!r} is not true/false")
    return ReadoutColumns(_numeric(df, CAL_COLUMNS, path), calls.to_numpy(dtype=object),
                          str(points.iloc[0]), score, flag.isin(TRUE).to_numpy())


def read_predictions(path: str | Path) -> Predictions:
    """Read and validate a predictions CSV; ValueError naming the column/line/value otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)  # text: errors quote the file
    df.columns = [str(c).strip() for c in df.columns]
    absent = [c for c in [IMAGE_COLUMN, *PROB_COLUMNS] if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: missing column(s) {', '.join(absent)}; a predictions CSV "
                         f"needs '{IMAGE_COLUMN}' and prob_<Finding> for all 14 findings")
    missing_std = [c for c in STD_COLUMNS if c not in df.columns]
    if 0 < len(missing_std) < len(STD_COLUMNS):
        raise ValueError(f"{path}: std_ columns are all-or-none; missing {', '.join(missing_std)}")
    images = df[IMAGE_COLUMN].str.strip()
    if (images == "").any():
        raise ValueError(f"{path} line {int(np.argmax((images == '').to_numpy())) + 2}: "
                         f"empty '{IMAGE_COLUMN}'")
    dup = images.duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy()))
        raise ValueError(f"{path} line {row + 2}: image {images.iloc[row]!r} is predicted more "
                         f"than once ({int(dup.sum())} repeated row(s) in all)")
    std = _numeric(df, STD_COLUMNS, path) if not missing_std else None
    rule = score = flags = None
    if std is not None:
        rule = _rule(df, path)
        score = _score(df, std, rule, path)
        flags = image_uncertainty(std, rule)[1]
    elif SCORE_COLUMN in df.columns:
        raise ValueError(f"{path}: an '{SCORE_COLUMN}' column needs the std_ columns it scores")
    source = (np.array([s or None for s in df["source"].str.strip()], dtype=object)
              if "source" in df.columns else None)
    return Predictions(images=images.to_numpy(dtype=object), prob=_numeric(df, PROB_COLUMNS, path),
                       std=std, uncertain=_flags(df, flags, path), source=source, score=score,
                       rule=rule, readout=_readout(df, path))

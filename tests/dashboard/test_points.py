"""cxr/dashboard/points.py: the operating points' validation rates with their intervals and the
caption the Predict and Triage pages show, for new readouts, old ones and none."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cxr.dashboard.points import interval_columns, interval_text, point_caption
from cxr.evaluation.operating_points import choose_points

LABELS = ("Mass", "Hernia")


def _readout(points):
    return SimpleNamespace(labels=LABELS, points=points, target=0.9)


def _points():
    """Mass: 120 validation positives (target met); Hernia: 10 (not met: fallback)."""
    rng = np.random.default_rng(0)
    y = np.zeros((600, 2), np.uint8)
    y[:120, 0], y[:10, 1] = 1, 1
    p = rng.normal(0, 1, y.shape) + 2.5 * y
    return choose_points(y, p, LABELS)


def test_interval_text_shows_the_exact_interval_and_says_when_there_is_none():
    row = _points()["sensitivity"]["Mass"]
    lo, hi = row["val_sensitivity_ci"]
    assert interval_text(row, "sensitivity") == \
        f"{row['val_sensitivity']:.2f} (95% CI {lo:.2f}-{hi:.2f})"
    old = {"threshold": 0.3, "val_sensitivity": 0.93, "val_specificity": 0.5}
    assert interval_text(old, "sensitivity") == "0.93 (no interval: older readout)"
    assert interval_text({"threshold": None, "val_sensitivity": None}, "sensitivity") == "n/a"
    cols = interval_columns(_readout(_points()), "specificity", LABELS)
    assert list(cols) == ["val sensitivity (95% CI)", "val specificity (95% CI)"]
    assert all("95% CI" in text for text in cols["val specificity (95% CI)"])


def test_caption_names_the_confidence_and_every_finding_that_missed_its_target():
    readout = _readout(_points())
    text = point_caption(readout, "sensitivity")
    assert "95% lower confidence bound is >= 0.90" in text
    assert "Not met for 1 finding(s), too few validation positives: Hernia (10)" in text
    assert "most sensitive threshold" in text and "Mass" not in text.split("Not met")[1]
    assert "Research use only, not for diagnosis." in text
    spec = point_caption(readout, "specificity")
    assert "High-specificity point" in spec and "Not met" not in spec
    assert "no target is promised" in point_caption(readout, "youden")


def test_caption_of_an_older_readout_and_of_none():
    old = {pt: {f: {"threshold": 0.4, "val_sensitivity": 0.91, "val_specificity": 0.6}
                for f in LABELS} for pt in ("youden", "sensitivity", "specificity")}
    text = point_caption(_readout(old), "sensitivity")
    assert "point estimate >= 0.90" in text and "no confidence bound" in text
    assert "No readout" in point_caption(None, "sensitivity")

"""cxr/dashboard/charts.py: the pages' plotly figures, built from plain data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr.dashboard import charts
from cxr.labels import FINDINGS
from cxr.uncertainty import UNCERTAIN_STD


def test_probability_bars_sorted_and_uncertain_in_red():
    mean = np.linspace(0.1, 0.9, 14)
    std = np.where(np.arange(14) == 3, 0.2, 0.01)
    fig = charts.probability_bars(list(FINDINGS), mean, std)
    bar = fig.data[0]
    assert list(bar.y)[-1] == FINDINGS[13]  # the most likely on top
    assert bar.marker.color[list(bar.y).index(FINDINGS[3])] == charts.UNCERTAIN_COLOR
    assert sum(c == charts.UNCERTAIN_COLOR for c in bar.marker.color) == 1


def test_history_figures_one_trace_per_curve():
    h = pd.DataFrame({"phase": ["head", "finetune"], "epoch": [1, 2], "train_loss": [0.3, 0.2],
                      "val_loss": [0.35, 0.3], "val_macro_auc": [0.6, 0.7]})
    loss, auc = charts.history_figures({"a": h, "b": h, "empty": pd.DataFrame()})
    assert [t.name for t in loss.data] == ["a train", "a val", "b train", "b val"]
    assert [t.name for t in auc.data] == ["a", "b"]


def test_probability_bars_threshold_is_strict_and_defaults_to_the_reports():
    std = np.zeros(14)
    std[0], std[1] = UNCERTAIN_STD, UNCERTAIN_STD + 1e-6  # at the threshold is not above it
    bar = charts.probability_bars(list(FINDINGS), np.linspace(0, 1, 14), std).data[0]
    colors = dict(zip(bar.y, bar.marker.color))
    assert colors[FINDINGS[0]] == charts.CONFIDENT_COLOR
    assert colors[FINDINGS[1]] == charts.UNCERTAIN_COLOR
    strict = charts.probability_bars(list(FINDINGS), np.linspace(0, 1, 14), std, threshold=0.0)
    assert sum(c == charts.UNCERTAIN_COLOR for c in strict.data[0].marker.color) == 2
    assert "std > 0.0" in strict.layout.title.text


def test_mc_histograms_one_panel_per_top_finding():
    samples = np.random.default_rng(0).random((25, 14))
    fig = charts.mc_histograms(list(FINDINGS), samples, [9, 2])
    assert [a.text for a in fig.layout.annotations] == [FINDINGS[9], FINDINGS[2]]
    assert [list(t.x) for t in fig.data] == [list(samples[:, 9]), list(samples[:, 2])]


def test_phase_line_only_for_a_single_two_phase_run():
    h = pd.DataFrame({"phase": ["head", "head", "finetune"], "epoch": [1, 2, 3],
                      "train_loss": [0.3, 0.2, 0.1]})
    loss, _ = charts.progress_curves(h)
    assert [s.x0 for s in loss.layout.shapes] == [2.5]  # between epochs 2 and 3
    loss, _ = charts.history_figures({"a": h, "b": h})
    assert not loss.layout.shapes


def test_pooled_calibration_weights_bins_by_count():
    cal = pd.DataFrame({"finding": ["Mass", "Edema"], "bin": [3, 3],
                        "mean_predicted": [0.2, 0.3], "observed_frequency": [0.0, 0.5],
                        "count": [1, 3]})
    pooled = charts.calibration_figure({"m": cal}, None).data[0]
    assert list(pooled.x) == pytest.approx([(0.2 + 3 * 0.3) / 4])
    assert list(pooled.y) == pytest.approx([1.5 / 4]) and list(pooled.customdata) == [4]
    mass = charts.calibration_figure({"m": cal}, "Mass").data[0]
    assert list(mass.x) == [0.2]


def test_calibration_before_after_one_colour_per_model_dashed_after():
    before = pd.DataFrame({"finding": ["Mass", "Mass"], "bin": [2, 12],
                           "mean_predicted": [0.15, 0.85], "observed_frequency": [0.4, 0.6],
                           "count": [5, 5]})
    after = before.assign(mean_predicted=[0.38, 0.62])
    fig = charts.calibration_before_after({"a": (before, after), "b": (before, pd.DataFrame())},
                                          "Mass")
    names = [t.name for t in fig.data]
    assert names == ["a before", "a after", "b before", "perfect"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert fig.data[0].line.dash is None and fig.data[1].line.dash == "dash"
    assert list(fig.data[1].x) == [0.38, 0.62]


def test_figures_skip_models_without_data():
    roc = pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})
    fig = charts.roc_figure({"a": (roc, 0.5), "b": (pd.DataFrame(), float("nan"))}, "Mass")
    assert [t.name for t in fig.data] == ["a (AUC 0.500)", "chance"]
    assert len(charts.selective_figure({"a": pd.DataFrame()}).data) == 0


def test_macro_bars_without_ci_have_no_error_bar():
    fig = charts.macro_auc_bars(["a", "b"], [0.7, 0.8], [0.65, float("nan")], [0.75, float("nan")])
    bar = fig.data[0]
    assert list(bar.error_y.array) == pytest.approx([0.05, 0.0])
    assert list(bar.text) == ["0.700", "0.800"] and bar.marker.color[0] != bar.marker.color[1]

"""Plotly figures for the pages (pure functions of data; the pages only `st.plotly_chart` them)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cxr.uncertainty import UNCERTAIN_STD

UNCERTAIN_COLOR, CONFIDENT_COLOR = "#d62728", "#1f77b4"


def probability_bars(labels, mean, std, threshold: float = UNCERTAIN_STD,
                     uncertain=None,
                     axis: str = "mean probability (MC dropout) ± std") -> go.Figure:
    """Horizontal bars of mean probability, highest on top, std as error bars; bars whose std
    exceeds `threshold` (or, given, whose `uncertain` flag is set: the raw MC std's, when the
    bars are calibrated) are drawn in red."""
    mean, std = np.asarray(mean), np.asarray(std)
    red = np.asarray(std > threshold if uncertain is None else uncertain, bool)
    order = np.argsort(mean)  # plotly draws the first bar at the bottom
    labels, mean, std = [labels[i] for i in order], mean[order], std[order]
    colors = [UNCERTAIN_COLOR if r else CONFIDENT_COLOR for r in red[order]]
    fig = go.Figure(go.Bar(
        x=mean, y=labels, orientation="h", marker_color=colors,
        error_x=dict(type="data", array=std, visible=True, color="#444"), customdata=std,
        hovertemplate="%{y}: %{x:.3f} ± %{customdata:.3f}<extra></extra>"))
    fig.update_layout(xaxis=dict(range=[0, 1.05], title=axis),
                      height=30 * len(labels) + 80, margin=dict(l=10, r=10, t=30, b=40),
                      title=f"red: std > {threshold}")
    return fig


def mc_histograms(labels, samples: np.ndarray, top: list[int],
                  axis: str = "probability") -> go.Figure:
    """Histograms of the sampled probabilities (passes x findings) for the findings in `top`."""
    fig = make_subplots(rows=1, cols=len(top), subplot_titles=[labels[k] for k in top],
                        shared_yaxes=True)
    for i, k in enumerate(top, start=1):
        fig.add_trace(go.Histogram(x=samples[:, k], xbins=dict(start=0, end=1, size=0.025),
                                   marker_color=CONFIDENT_COLOR, showlegend=False), row=1, col=i)
        fig.update_xaxes(range=[0, 1], title_text=axis, row=1, col=i)
    fig.update_yaxes(title_text="passes", row=1, col=1)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=40), bargap=0.05)
    return fig


def history_figures(histories: dict[str, pd.DataFrame]) -> tuple[go.Figure, go.Figure]:
    """(train vs val loss per run, val macro AUC per run) by epoch (the report's Figure 6)."""
    loss, auc = go.Figure(), go.Figure()
    for i, (name, h) in enumerate(histories.items()):
        if h.empty or "epoch" not in h:
            continue
        for fig, column, label, dash in ((loss, "train_loss", f"{name} train", None),
                                         (loss, "val_loss", f"{name} val", "dash"),
                                         (auc, "val_macro_auc", name, None)):
            if column in h:
                fig.add_trace(go.Scatter(x=h["epoch"], y=h[column], name=label,
                                         line=dict(color=_color(i), dash=dash),
                                         mode="lines+markers"))
    _phase_lines(loss, histories)
    loss.update_layout(title="loss (solid: train, dashed: validation)", xaxis_title="epoch",
                       yaxis_title="loss", height=320, margin=dict(t=40, b=40))
    auc.update_layout(title="validation macro AUC", xaxis_title="epoch", yaxis_title="AUC",
                      height=320, margin=dict(t=40, b=40))
    return loss, auc


def _phase_lines(fig: go.Figure, histories: dict[str, pd.DataFrame]) -> None:
    """A dotted line where fine-tuning starts (only when one run is shown)."""
    if len(histories) != 1:
        return
    h = next(iter(histories.values()))
    if "phase" in h and h["phase"].nunique() > 1:  # then some epoch's phase is not the first's
        first = h.loc[h["phase"] != h["phase"].iloc[0], "epoch"]
        fig.add_vline(x=float(first.iloc[0]) - 0.5, line_dash="dot",
                      annotation_text=str(h.loc[first.index[0], "phase"]))


def roc_figure(curves: dict[str, tuple[pd.DataFrame, float]], finding: str) -> go.Figure:
    """ROC of one finding, one curve per model: {name: (frame with fpr/tpr, auc)}."""
    fig = go.Figure()
    for i, (name, (roc, auc)) in enumerate(curves.items()):
        if roc.empty:
            continue
        fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines",
                                 name=f"{name} (AUC {auc:.3f})", line=dict(color=_color(i))))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line=dict(color="grey", dash="dot")))
    fig.update_layout(title=f"ROC: {finding}", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", height=420,
                      xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
    return fig


def calibration_figure(tables: dict[str, pd.DataFrame], finding: str | None) -> go.Figure:
    """Reliability curves: observed frequency vs mean predicted probability per bin, one per
    model; `finding=None` pools all findings' bins (count-weighted)."""
    fig = go.Figure()
    for i, (name, cal) in enumerate(tables.items()):
        if not cal.empty:
            fig.add_trace(_reliability_trace(cal, finding, name, dict(color=_color(i))))
    return _reliability_layout(fig, f"calibration: {finding or 'all findings'}")


def calibration_before_after(tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
                             finding: str | None) -> go.Figure:
    """Reliability curves before (solid) and after (dashed) the readout's calibration, one
    colour per model: {name: (calibration.csv, calibration_calibrated.csv)}."""
    fig = go.Figure()
    for i, (name, (before, after)) in enumerate(tables.items()):
        for when, cal, dash in (("before", before, None), ("after", after, "dash")):
            if not cal.empty:
                fig.add_trace(_reliability_trace(cal, finding, f"{name} {when}",
                                                 dict(color=_color(i), dash=dash)))
    title = f"before / after calibration: {finding or 'all findings'}"
    return _reliability_layout(fig, title)


def _reliability_trace(cal: pd.DataFrame, finding: str | None, name: str,
                       line: dict) -> go.Scatter:
    """One reliability curve of a calibration table (`finding=None`: all bins, count-weighted)."""
    if finding is not None:
        part = cal[cal["finding"] == finding]
    else:
        weighted = cal.assign(wp=cal["mean_predicted"] * cal["count"],
                              wo=cal["observed_frequency"] * cal["count"])
        g = weighted.groupby("bin")[["wp", "wo", "count"]].sum()
        part = pd.DataFrame({"mean_predicted": g["wp"] / g["count"],
                             "observed_frequency": g["wo"] / g["count"], "count": g["count"]})
    return go.Scatter(x=part["mean_predicted"], y=part["observed_frequency"],
                      mode="lines+markers", name=name, line=line, customdata=part["count"],
                      hovertemplate="predicted %{x:.2f}, observed %{y:.2f} "
                                    "(%{customdata} images)<extra></extra>")


def _reliability_layout(fig: go.Figure, title: str) -> go.Figure:
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line=dict(color="grey", dash="dot")))
    fig.update_layout(title=title, height=420,
                      xaxis_title="mean predicted probability", yaxis_title="observed frequency",
                      xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
    return fig


def selective_figure(tables: dict[str, pd.DataFrame]) -> go.Figure:
    """Macro AUC of the kept images against the fraction referred (most uncertain first)."""
    fig = go.Figure()
    for i, (name, sel) in enumerate(tables.items()):
        if sel.empty:
            continue
        fig.add_trace(go.Scatter(x=sel["referral_rate"], y=sel["macro_auc"], name=name,
                                 mode="lines+markers", line=dict(color=_color(i))))
    fig.update_layout(title="selective prediction: refer the most uncertain images",
                      xaxis_title="fraction referred to a human",
                      yaxis_title="macro AUC of the rest",
                      xaxis_tickformat=".0%", height=380)
    return fig


def macro_auc_bars(names, auc, lo, hi) -> go.Figure:
    auc, lo, hi = (np.asarray(a, dtype=float) for a in (auc, lo, hi))
    fig = go.Figure(go.Bar(
        x=list(names), y=auc, marker_color=[_color(i) for i in range(len(auc))],
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(hi - auc),
                     arrayminus=np.nan_to_num(auc - lo), visible=True),
        text=[f"{a:.3f}" for a in auc], textposition="outside"))
    fig.update_layout(title="macro AUC with 95% patient-bootstrap CI", yaxis=dict(range=[0, 1.05]),
                      yaxis_title="macro AUC", height=380)
    return fig


def progress_curves(history: pd.DataFrame) -> tuple[go.Figure, go.Figure]:
    """The Train page's live curves for one run."""
    return history_figures({"run": history})


def _color(i: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#d62728")
    return palette[i % len(palette)]

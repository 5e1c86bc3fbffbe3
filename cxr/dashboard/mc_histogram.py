"""One finding's MC-dropout samples as a PNG histogram: the report's Figure 7 (the histogram of
100 stochastic passes for one film's 'Atelectasis'), for the Predict page's download.

    from cxr.dashboard.mc_histogram import histogram_png
    png = histogram_png(result.shown_samples[:, k], result.labels[k], axis="probability")

Drawn with matplotlib's object API (Agg canvas, no pyplot state), so sessions do not share a
figure. The bins span the samples' own range, as in the report's figure, where a tight
distribution would fall in one bin of a 0-1 axis. The image says what it is and that it is not
for diagnosis; it names no film.
"""
from __future__ import annotations

import io

import numpy as np

NOTE = "Research and teaching tool, not for diagnosis."


def histogram_png(samples: np.ndarray, finding: str, axis: str = "probability",
                  bins: int = 20, dpi: int = 120) -> bytes:
    """(passes,) sampled probabilities of one finding -> PNG bytes: the histogram, its mean
    (a line) and std in the title, the number of passes, and NOTE."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(samples, dtype=float).ravel()
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError(f"a histogram needs at least 2 finite samples, got {values.size}")
    mean, std = float(values.mean()), float(values.std())
    fig = Figure(figsize=(6.4, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color="#4c78a8", edgecolor="white")
    ax.axvline(mean, color="#e45756", linewidth=2, label=f"mean {mean:.4f}")
    ax.set_xlabel(f"{axis} of {finding}")
    ax.set_ylabel("passes")
    ax.set_title(f"{finding}: {values.size} MC-dropout passes, mean {mean:.4f}, std {std:.4f}")
    ax.legend(loc="upper right")
    fig.text(0.01, 0.01, NOTE, fontsize=8, color="#666666")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()

"""cxr/dashboard/mc_histogram.py: the report's Figure 7 as a PNG."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxr.dashboard.mc_histogram import histogram_png


def test_histogram_is_a_png_that_draws_the_samples():
    samples = np.random.default_rng(0).normal(0.3029, 0.0169, 100)  # the report's example
    png = histogram_png(samples, "Atelectasis")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (768, 480)
    pixels = np.asarray(image.convert("RGB"), dtype=int)
    bars = np.all(np.abs(pixels - [0x4C, 0x78, 0xA8]) < 8, axis=-1)
    assert bars.sum() > 5_000  # the bars are drawn, not an empty axis
    other = histogram_png(samples + 0.2, "Atelectasis")
    assert other != png  # the title and bars follow the values


@pytest.mark.parametrize("bad", [np.array([0.5]), np.array([0.1, np.nan])])
def test_too_few_or_non_finite_samples_are_refused(bad):
    with pytest.raises(ValueError, match="2 finite samples"):
        histogram_png(bad, "Hernia")

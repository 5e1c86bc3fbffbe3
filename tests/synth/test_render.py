"""cxr/synth/render.py: every pixel a lesion changes lies inside its boxes, and boxes are tight."""
from __future__ import annotations

import numpy as np
import pytest

from cxr.labels import FINDINGS
from cxr.synth.plan import Film
from cxr.synth.render import make_case, render_film, render_with_boxes


@pytest.mark.parametrize("finding", FINDINGS)
def test_pixels_a_finding_changes_lie_inside_its_boxes(finding):
    for k, (size, others) in enumerate([(64, ()), (96, ("Effusion", "Cardiomegaly", "Nodule"))]):
        findings = tuple(f for f in FINDINGS if f == finding or f in others)
        case = make_case(Film(100 + k, k, 60, "F" if k else "M", "AP" if k else "PA", findings),
                         seed=5)
        pixels, boxes = render_with_boxes(case, size)
        assert np.array_equal(pixels, render_film(case, size))
        changed = pixels != render_film(case, size, without=(finding,))
        assert changed.sum() >= 1, f"{finding} drew nothing"
        inside = np.zeros_like(changed)
        for name, x, y, w, h in boxes:
            if name == finding:
                inside[y:y + h, x:x + w] = True
        assert not (changed & ~inside).any(), f"{finding}: changed pixels outside its boxes"


def test_boxes_are_tight():
    """A nodule's box is small: the bounds of what it draws, not a whole lung."""
    case = make_case(Film(7, 0, 50, "M", "PA", ("Nodule",)), seed=3)
    _, boxes = render_with_boxes(case, 128)
    assert boxes and all(w <= 0.1 * 128 and h <= 0.1 * 128 for _, _, _, w, h in boxes)

"""cxr/triage_order.py: each queue order on a hand-made worklist, ties as documented."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import FINDINGS
from cxr.triage_order import order_cases

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: review_cases
from review_cases import case, worklist  # noqa: E402

PTX = "Pneumothorax"
ROWS = [  # ids 1..10 in this order
    case("a", cal={PTX: 0.7}, calls={PTX: "positive"}, ood=True, ood_score=40.0),
    case("b", cal={PTX: 0.9}, calls={PTX: "positive"}),
    case("c", score=0.02, ood=True, ood_score=30.0),
    case("d", score=0.2, uncertain=True),
    case("e", cal={"Effusion": 0.8}, calls={"Effusion": "positive"}),
    case("f", cal={"Mass": 0.8}, calls={"Mass": "positive"}),
    case("g", score=0.05, cal={"Effusion": 0.3}),
    case("h", score=0.03, cal={"Effusion": 0.1}),
    case("i", score=0.05, cal={"Effusion": 0.45}),
    case("j", cal={"Atelectasis": 0.55}),
]


@pytest.fixture
def cases(tmp_path, wl_target):  # on SQLite and on PostgreSQL
    return worklist(tmp_path, ROWS, target=wl_target).cases()


def test_urgent_puts_the_urgent_positive_first_then_ood_uncertain_then_positives(cases):
    out = order_cases(cases, "urgent")
    # b before a: higher P(Pneumothorax); a is OOD too but an urgent call wins;
    # d before c: uncertainty 0.2 > 0.02; e before f: tie at P 0.8, lower id first;
    # g before i: tie at uncertainty 0.05, lower id first; j has the lowest score
    assert list(out["image"]) == ["b", "a", "d", "c", "e", "f", "g", "i", "h", "j"]
    assert list(out["group"]) == [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert out["reason"][0] == "urgent: positive call for Pneumothorax (P 0.90)"
    assert out["reason"][2].startswith("uncertain 0.200")
    assert out["reason"][3] == "out of distribution (score 30.0)"
    assert out["reason"][5] == "positive call: Mass"


def test_the_urgent_list_is_configurable_and_checked(cases):
    out = order_cases(cases, "urgent", urgent=("Mass", PTX))
    assert list(out["image"][:3]) == ["b", "f", "a"]  # P 0.9, 0.8, 0.7
    with pytest.raises(ValueError, match="Pneumonothorax"):
        order_cases(cases, "urgent", urgent=("Pneumonothorax",))


def test_uncertain_is_by_score_with_ties_by_id(cases):
    out = order_cases(cases, "uncertain")
    assert list(out["image"]) == ["d", "g", "i", "h", "c", "a", "b", "e", "f", "j"]
    assert out["reason"][0] == "uncertainty 0.200 (rule mean)"


def test_likely_negative_needs_no_call_at_the_sensitivity_point(cases):
    t = np.full(len(FINDINGS), 0.5)
    t[FINDINGS.index("Hernia")] = np.nan  # a finding without a threshold calls nothing
    out = order_cases(cases, "likely-negative", sensitivity_thresholds=t)
    # j: no call at Youden but 0.55 >= 0.5 at the sensitivity point; c OOD; d uncertain
    assert list(out["image"]) == ["h", "g", "i"]  # clearest first: margins -0.4, -0.2, -0.05
    assert out["reason"][2] == ("no positive call at the high-sensitivity point; closest: "
                                "Effusion (P 0.45 < 0.50)")
    assert not out["reason"].str.contains("normal").any()
    with pytest.raises(ValueError, match="no high-sensitivity threshold for any finding"):
        order_cases(cases, "likely-negative", sensitivity_thresholds=np.full(14, np.nan))


def test_likely_negative_without_thresholds_is_refused_unless_called_there(cases, tmp_path):
    with pytest.raises(ValueError, match="high-sensitivity operating point"):
        order_cases(cases, "likely-negative")
    rows = [case("x", score=0.04, point="sensitivity"), case("y", score=0.02, point="sensitivity"),
            case("z", calls={"Mass": "positive"}, point="sensitivity")]
    other = worklist(tmp_path, rows, name="s.sqlite", checkpoint_hash="b" * 64).cases()
    assert list(order_cases(other, "likely-negative")["image"]) == ["y", "x"]


def test_unknown_order_is_an_error(cases):
    with pytest.raises(ValueError, match="expected one of urgent, uncertain, likely-negative"):
        order_cases(cases, "normal")

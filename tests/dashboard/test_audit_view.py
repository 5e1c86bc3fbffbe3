"""cxr/dashboard/audit.py and cxr/dashboard/orders.py: the Audit page's tables and captions,
the Triage page's order choice and its likely-negative caption."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cxr.dashboard import audit, orders, plain
from cxr.evaluation.calibration import Calibration
from cxr.evaluation.ood import OODModel
from cxr.labels import FINDINGS
from cxr.readout import Readout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: review_cases
from review_cases import HASH, case, worklist  # noqa: E402

EFF = "Effusion"


def _readout(sensitivity=0.9, recalibration=None) -> Readout:
    f = len(FINDINGS)
    point = {x: {"threshold": 0.5, "val_sensitivity": sensitivity - 0.01 * (x == "Mass"),
                 "val_specificity": 0.4} for x in FINDINGS}
    prov = {"n_val_images": 80} | ({"recalibration": recalibration} if recalibration else {})
    return Readout(HASH, tuple(FINDINGS),
                   Calibration("temperature", np.ones(f), np.zeros(f), np.ones(f, bool)),
                   {"youden": point, "sensitivity": point, "specificity": point},
                   OODModel(np.zeros(2), np.eye(2), 3.0, 0.95, 0.1), prov)


@pytest.fixture
def wl(tmp_path):
    rows = [case("p", cal={"Pneumothorax": 0.8}, calls={"Pneumothorax": "positive"}),
            case("u", score=0.3, uncertain=True),
            case("e", cal={EFF: 0.7}, calls={EFF: "positive"}, score=0.2),
            case("n", cal={EFF: 0.2})]
    wl = worklist(tmp_path, rows)
    wl.record_decision(1, "agree", "dr a")
    wl.record_decision(2, "disagree", "dr a", corrected=[EFF])
    wl.record_decision(3, "agree", "dr b")
    return wl


def test_the_likely_negative_caption_states_the_validation_sensitivity_never_normal():
    text = orders.order_caption("likely-negative", _readout(0.92))
    assert "validation sensitivity >= 0.90" in text and "0.91 to 0.92" in text
    assert "9% of a finding's positive films" in text and "not checked" not in text
    partial = _readout(0.92)
    partial.points["sensitivity"]["Hernia"] = {"threshold": None, "val_sensitivity": None,
                                               "val_specificity": None}
    assert "1 finding(s) have no threshold at that point and are not checked" in \
        orders.order_caption("likely-negative", partial)
    assert "normal" not in text.lower() and "Research use only" in text
    assert "no high-sensitivity point" in orders.order_caption("likely-negative", None)
    for order in orders.ORDER_LABELS:
        assert "normal" not in orders.ORDER_LABELS[order].lower()
    assert "Pneumothorax, Mass" in orders.order_caption("urgent", urgent=("Pneumothorax", "Mass"))
    table = orders.sensitivity_table(_readout())
    assert table.loc[table.finding == "Mass", "validation sensitivity"].item() == 0.89


def test_ordered_queue_applies_the_readouts_sensitivity_point_or_says_why_not(wl):
    cases = wl.cases()
    table, problem = orders.ordered_queue(cases, "urgent")
    assert problem is None and list(table["image"]) == ["p", "u", "e", "n"]
    table, problem = orders.ordered_queue(cases, "likely-negative", _readout())
    assert problem is None and list(table["image"]) == ["n"]  # P 0.2 < 0.5 everywhere
    table, problem = orders.ordered_queue(cases, "likely-negative", None)
    assert table.empty and "high-sensitivity operating point" in problem


def test_which_readout_is_in_force():
    assert orders.readout_in_force(None).startswith("No readout in force")
    assert "validation split (80 images)" in orders.readout_in_force(_readout())
    r = {"n_cases": 40, "worklist": "data/wl.sqlite", "findings_refit": [EFF],
         "date_range": ["2026-01-02T10:00", "2026-02-03T11:00"]}
    text = orders.readout_in_force(_readout(recalibration=r))
    assert text == ("Readout in force: refitted on 40 reviewed cases of the worklist "
                    "data/wl.sqlite (decisions 2026-01-02 to 2026-02-03) for 1 finding(s); the "
                    "others keep their validation fit.")


def test_queue_audit_tables(wl, tmp_path):
    report = audit.queue_audit(wl, HASH, n_bootstrap=50)
    frame = audit.finding_frame(report)
    eff = frame[frame.finding == EFF].iloc[0]
    # case 1: TN; case 2 (no call, the reviewer says Effusion): FN; case 3: TP; 4 is pending
    assert (eff.TP, eff.FP, eff.TN, eff.FN) == (1, 0, 1, 1)
    assert eff.sensitivity.startswith("0.50")
    assert list(audit.reviewer_frame(report)["decisions"]) == [2, 1]
    assert "Pending: 1 of 4 (25%)" in audit.headline(report)
    assert audit.simulated_note(report) is None
    empty = worklist(tmp_path, [case("x")], checkpoint_hash="c" * 64, name="other.sqlite")
    assert audit.queue_audit(empty, "c" * 64) is None


def test_simulated_decisions_are_said(wl):
    wl.record_decision(4, "agree", "simulated reviewer (demo)", simulated=True)
    report = audit.queue_audit(wl, HASH, n_bootstrap=0)
    assert audit.simulated_note(report).startswith("1 of 4 decisions were made by the demo's "
                                                   "SIMULATED reviewer")


def test_names_on_the_audit_page_do_not_turn_into_markdown():
    # one home for this: cxr.dashboard.plain.md (an underscore inside a word emphasises
    # nothing in CommonMark, so it stays; at a word's edge it is escaped)
    assert plain.md("site_a *new* [x](y)") == r"site_a \*new\* \[x\]\(y\)"
    assert plain.md("_site_ a") == r"\_site\_ a"

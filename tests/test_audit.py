"""cxr/audit.py and `cxr audit`, `cxr worklist cases`: figures of a worklist with known answers
against a hand computation; the disagreement AUROC equal to scikit-learn's."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr.audit import audit_queue, score_vs_disagreement
from cxr.cli import main
from cxr.evaluation.bootstrap import resample_counts, weighted_auc
from cxr.labels import FINDINGS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: review_cases
from review_cases import HASH, case, worklist  # noqa: E402

EFF = "Effusion"
SCORES = [0.01, 0.02, 0.30, 0.05, 0.03, 0.04, 0.06, 0.07, 0.5, 0.5]
CALLS = ["positive", "positive", "positive", "negative", "negative", "negative", "negative",
         "uncertain", "negative", "negative"]
# (case number, decision, corrected, reviewer), in time order; case 1's latest is "agree"
DECISIONS = [(1, "disagree", [], "dr b"), (1, "agree", None, "dr a"), (2, "agree", None, "dr a"),
             (3, "disagree", [], "dr b"), (4, "disagree", [EFF], "dr b"),
             (5, "agree", None, "dr a"), (6, "agree", None, "dr a"), (7, "agree", None, "dr b"),
             (8, "agree", None, "dr a"), (9, "second_read", None, "dr b")]


@pytest.fixture
def wl(tmp_path):
    return _decided(tmp_path)


def _decided(tmp_path, target=None):
    rows = [case(f"c{i + 1}", calls={EFF: CALLS[i]}, score=SCORES[i], ood_score=float(i))
            for i in range(10)]
    wl = worklist(tmp_path, rows, target=target)
    for number, decision, corrected, reviewer in DECISIONS:
        wl.record_decision(number, decision, reviewer, corrected=corrected)
    return wl


def test_per_finding_rates_and_counts_match_a_hand_computation(tmp_path, wl_target):
    wl = _decided(tmp_path, wl_target)  # on SQLite and on PostgreSQL
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"not read")
    report = {f: {"val": 0.1 + k / 100} for k, f in enumerate(FINDINGS)}
    (ckpt.parent / "split.json").write_text(json.dumps({"report": {"prevalence_images": report}}))
    r = audit_queue(wl, HASH, ckpt, n_bootstrap=200)
    eff = r["findings"][EFF]
    # cases 1, 2: TP; 3: FP (No Finding); 4: FN; 5-7: TN; 8: uncertain call, left out
    assert (eff["tp"], eff["fp"], eff["tn"], eff["fn"]) == (2, 1, 3, 1)
    assert eff["n_uncertain_calls"] == 1 and eff["n_cases"] == 8
    assert eff["sensitivity"] == pytest.approx(2 / 3) and eff["specificity"] == 0.75
    assert eff["ppv"] == pytest.approx(2 / 3) and eff["npv"] == 0.75
    assert eff["site_prevalence"] == 3 / 8  # reference positives: cases 1, 2, 4
    assert eff["validation_prevalence"] == pytest.approx(0.1 + FINDINGS.index(EFF) / 100)
    lo, hi = eff["sensitivity_ci"]
    assert 0 <= lo <= 2 / 3 <= hi <= 1
    mass = r["findings"]["Mass"]
    assert (mass["tn"], mass["sensitivity"], mass["sensitivity_ci"]) == (8, None, None)
    assert r["left_out"] == {"second_read": 1, "disagree_without_findings": 0, "no_readout": 0}
    assert (r["n_pending"], r["share_pending"], r["n_decided_used"]) == (1, 0.1, 8)
    t = r["throughput"]
    assert t["n_decisions"] == 10
    assert [(x["reviewer"], x["decisions"], x["cases"]) for x in t["reviewers"]] == [
        ("dr a", 5, 5), ("dr b", 5, 5)]


def test_uncertainty_auroc_for_disagreement_equals_sklearn_and_the_hand_count(wl):
    r = audit_queue(wl, HASH, n_bootstrap=300)
    disagreed = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)  # cases 3 and 4
    # 0.30 is above all six agreed scores, 0.05 above four of them: 10 of 12 pairs
    assert r["uncertainty_auroc"] == pytest.approx(10 / 12)
    assert r["uncertainty_auroc"] == roc_auc_score(disagreed, SCORES[:8])
    assert r["ood_auroc"] == roc_auc_score(disagreed, np.arange(8.0))
    lo, hi = r["uncertainty_auroc_ci"]
    assert lo <= 10 / 12 <= hi
    dec = r["uncertainty"]["deciles"]
    assert sum(d["n"] for d in dec) == 8 and sum(d["disagreed"] for d in dec) == 2
    assert dec[-1]["score_max"] == pytest.approx(0.30) and dec[-1]["rate"] == 1.0


def test_the_bootstrap_auc_with_every_case_once_is_sklearns():
    rng = np.random.default_rng(3)
    d, s = rng.integers(0, 2, 200).astype(bool), rng.integers(0, 20, 200) / 20  # with ties
    codes = np.arange(200)
    assert weighted_auc(d, s, codes, np.ones((1, 200)))[0] == pytest.approx(roc_auc_score(d, s))
    out = score_vs_disagreement(s, d, n_bootstrap=100)
    assert out["auroc"] == roc_auc_score(d, s) and len(out["deciles"]) == 10
    counts, _ = next(resample_counts(codes, 1, 0))
    assert counts.sum() == 200


def test_one_class_or_no_score_gives_no_auroc():
    out = score_vs_disagreement(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0]))
    assert (out["auroc"], out["n_cases"], out["n_without_score"]) == (None, 2, 1)


def test_cxr_audit_writes_json_markdown_and_dated_figures(wl, tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "--db", str(wl.path), "--out", str(out), "--bootstrap", "50"]) == 0
    report = json.loads((out / "audit.json").read_text())
    for key in ("sensitivity", "specificity", "ppv", "npv", "sensitivity_ci", "tp"):
        assert key in report["findings"][EFF]
    assert report["uncertainty_auroc"] == pytest.approx(10 / 12) and "ood_auroc" in report
    md = (out / "audit.md").read_text()
    assert "not ground truth" in md and "not a random sample" in md
    assert f"checkpoint {HASH[:12]}" in md and report["date_range"][0][:16] in md
    for png in ("disagreement_by_uncertainty.png", "disagreement_by_ood.png",
                "rates_by_finding.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cxr_audit_names_the_queues_when_the_choice_is_ambiguous(wl, tmp_path, capsys):
    worklist(tmp_path, [case("x")], model="densenet121", checkpoint_hash="b" * 64)
    assert main(["audit", "--db", str(wl.path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "several queues match" in err and "densenet121 bbbbbbbbbbbb" in err
    assert main(["audit", "--db", str(wl.path), "--model", "fusion", "--bootstrap", "0",
                 "--out", str(tmp_path / "o")]) == 0


def test_cxr_worklist_cases_writes_the_queue_in_order(wl, tmp_path, capsys):
    out = tmp_path / "q.csv"
    assert main(["worklist", "cases", "--db", str(wl.path), "--order", "uncertain",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["image"][:3]) == ["c9", "c10", "c3"]  # 0.5, 0.5 (by id), 0.30
    assert {"reason", "call_Effusion", "prob_Effusion", "uncertainty"} <= set(table.columns)
    assert "path" not in table.columns
    assert main(["worklist", "cases", "--db", str(wl.path), "--order", "urgent",
                 "--urgent", "Effusion", "--status", "pending"]) == 0
    assert "c10" in capsys.readouterr().out


def test_cxr_audit_on_a_server_that_is_away_says_so_without_the_password(tmp_path, capsys):
    url = "postgresql+psycopg://cxr:s3cret-pw@127.0.0.1:9/worklist"  # nothing listens on 9
    assert main(["audit", "--db", url, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "s3cret-pw" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cxr_worklist_cases_likely_negative_uses_the_readouts_sensitivity_point(tmp_path, capsys):
    from cxr.evaluation.calibration import Calibration
    from cxr.evaluation.ood import OODModel
    from cxr.hashing import file_sha256
    from cxr.readout import Readout, save_readout

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"a checkpoint")
    sha, f = file_sha256(ckpt), len(FINDINGS)
    point = {x: {"threshold": 0.4, "val_sensitivity": 0.93, "val_specificity": 0.5}
             for x in FINDINGS}
    save_readout(Readout(sha, tuple(FINDINGS),
                         Calibration("temperature", np.ones(f), np.zeros(f), np.ones(f, bool)),
                         {"youden": point, "sensitivity": point, "specificity": point},
                         OODModel(np.zeros(2), np.eye(2), 3.0, 0.95, 0.1)), ckpt)
    wl = worklist(tmp_path, [case("low", cal={EFF: 0.1}), case("near", cal={EFF: 0.45}),
                             case("ood", ood=True)], checkpoint_hash=sha)
    out = tmp_path / "quick.csv"
    assert main(["worklist", "cases", "--db", str(wl.path), "--order", "likely-negative",
                 "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert list(pd.read_csv(out)["image"]) == ["low"]  # near: 0.45 >= 0.4; ood: out
    said = capsys.readouterr().out
    assert "reached 0.93 to 0.93" in said and "normal" not in said.lower()
    assert main(["worklist", "cases", "--db", str(wl.path), "--order", "likely-negative"]) == 1
    assert "high-sensitivity operating point" in capsys.readouterr().err


def test_names_cannot_run_as_formulas_or_split_markdown_rows(tmp_path):
    wl = worklist(tmp_path, [case("a"), case("b")], model="=HYPERLINK(1)")
    wl.record_decision(1, "agree", "dr | x")
    out = tmp_path / "q.csv"
    assert main(["worklist", "cases", "--db", str(wl.path), "--order", "urgent",
                 "--out", str(out)]) == 0
    assert set(pd.read_csv(out)["model"]) == {"'=HYPERLINK(1)"}
    assert main(["audit", "--db", str(wl.path), "--out", str(tmp_path / "a"),
                 "--bootstrap", "0"]) == 0
    assert r"| dr \| x | 1 | 1 |" in (tmp_path / "a" / "audit.md").read_text()

"""cxr/evaluation/recalibrate.py, `cxr calibrate --from-worklist`: refitting a readout on the
reviewed cases of a worklist whose probabilities are known to be over-confident."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit

from cxr.cli import main
from cxr.evaluation.calibration import Calibration
from cxr.evaluation.metrics import ece
from cxr.evaluation.ood import OODModel
from cxr.evaluation.operating_points import choose_points
from cxr.evaluation.recalibrate import in_force, recalibrate, reviewed_labels
from cxr.hashing import file_sha256
from cxr.labels import FINDINGS
from cxr.readout import Readout, load_readout, readout_path, save_readout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: review_cases
from review_cases import case, worklist  # noqa: E402

EFF = "Effusion"


def _readout(sha: str) -> Readout:
    """A validation readout with the identity calibration (it believes the model)."""
    f = len(FINDINGS)
    rng = np.random.default_rng(9)
    y, p = rng.integers(0, 2, (60, f)), rng.uniform(0, 1, (60, f))
    cal = Calibration("temperature", np.ones(f), np.zeros(f), np.ones(f, bool))
    ood = OODModel(np.zeros(3), np.eye(3), 5.0, 0.95, 0.1)
    return Readout(sha, tuple(FINDINGS), cal, choose_points(y, p, FINDINGS), ood,
                   {"n_val_images": 60, "fitted_on": {"calibration": "val"}})


def _overconfident(tmp_path, n=300, seed=0, target=None):
    """A worklist of n reviewed Effusion cases: true risk q (0.2 or 0.8, so that a few hundred
    cases measure the ECE well), the model says sigmoid(5 logit q) (over-confident: 0.001 or
    0.999), the reviewer's finding is drawn from q; calls at 0.5, agreed when right."""
    rng = np.random.default_rng(seed)
    q = rng.choice([0.2, 0.8], n)
    p = expit(5 * logit(q))
    y = rng.uniform(size=n) < q
    rows = [case(f"c{i}", prob={EFF: p[i]}, calls={EFF: "positive" if p[i] >= 0.5 else
                                                   "negative"}) for i in range(n)]
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"a checkpoint")
    wl = worklist(tmp_path, rows, checkpoint_hash=file_sha256(ckpt), target=target)
    for i in range(n):
        right = y[i] == (p[i] >= 0.5)
        wl.record_decision(i + 1, "agree" if right else "disagree", "dr a",
                           corrected=None if right else ([EFF] if y[i] else []))
    return wl, ckpt, p, y


def test_refit_on_overconfident_cases_lowers_the_held_out_ece(tmp_path, wl_target):
    wl, ckpt, p, y = _overconfident(tmp_path, target=wl_target)  # SQLite and PostgreSQL
    old = _readout(file_sha256(ckpt))
    cases, ref = reviewed_labels(wl, old.checkpoint_sha256)
    assert len(cases) == 300 and ref[:, FINDINGS.index(EFF)].sum() == y.sum()
    new, s = recalibrate(old, cases, ref, holdout_share=0.25, min_positives=10, source="wl")
    k = FINDINGS.index(EFF)
    assert new.calibration.temperature[k] > 3  # it softens (the truth is T = 5)
    assert s["findings_refit"] == [EFF] and s["n_cases"] == 225
    h = s["holdout"]
    assert h["n_cases"] == 75
    # the held-out cases are the LATER 75 decisions: cases 226..300
    hold = slice(225, 300)
    assert h["ece_before"] == pytest.approx(ece(y[hold], p[hold]))
    assert h["ece_before"] > 0.15 and h["ece_after"] < 0.6 * h["ece_before"]
    # findings without positives keep their validation fit, named with their counts
    assert s["findings_kept_validation_fit"]["Mass"] == "0 positives, 225 negatives"
    assert new.calibration.a[FINDINGS.index("Mass")] == 1.0
    assert new.points["youden"]["Mass"] == old.points["youden"]["Mass"]
    assert new.points["youden"][EFF] != old.points["youden"][EFF]
    assert new.provenance["recalibration"]["date_range"][0] == cases["decided_at"].iloc[0]


def test_too_few_cases_or_positives_is_refused(tmp_path):
    wl, ckpt, _, _ = _overconfident(tmp_path, n=12)
    old = _readout(file_sha256(ckpt))
    cases, ref = reviewed_labels(wl, old.checkpoint_sha256)
    with pytest.raises(ValueError, match="only 12 reviewed cases"):
        recalibrate(old, cases, ref, min_positives=10)
    none = np.zeros_like(ref)  # no reviewer found anything: nothing to fit a finding on
    with pytest.raises(ValueError, match=r"no finding has 3 positives.*Effusion \(0 positives, "
                                         r"7 negatives\)"):
        recalibrate(old, cases, none, holdout_share=0.4, min_positives=3)


def test_cli_writes_a_new_readout_keeps_the_old_and_says_where_it_was_fitted(tmp_path, capsys):
    wl, ckpt, _, _ = _overconfident(tmp_path, n=130)
    save_readout(_readout(file_sha256(ckpt)), ckpt)
    # ten of the reviewed films belong to the run's own split: never refitted on
    (tmp_path / "split.csv").write_text("image,patient,split\n" + "".join(
        f"c{i},{i},{'test' if i % 2 else 'train'}\n" for i in range(10)))
    before = readout_path(ckpt).read_bytes()
    assert in_force(load_readout(ckpt)).startswith("Readout in force: fitted on the run's "
                                                   "validation split (60 images)")
    assert main(["calibrate", "--from-worklist", str(wl.path), "--checkpoint", str(ckpt),
                 "--min-positives", "10"]) == 0
    out = capsys.readouterr().out
    assert "too few positives to refit (validation fit kept): Atelectasis (0 positives" in out
    assert "left out 10 reviewed case(s) that are films of the run's own split" in out
    assert "held out the later 30" in out
    kept = [f for f in tmp_path.glob("best.readout.*.pt") if f.name != "best.readout.pt"]
    assert len(kept) == 1 and kept[0].read_bytes() == before
    new = load_readout(ckpt)
    r = new.provenance["recalibration"]
    assert (r["fitted_on"], r["n_cases"], r["worklist"]) == ("worklist", 90, str(wl.path))
    assert r["previous_readout"] == str(kept[0]) and r["left_out_run_split"] == 10
    assert in_force(new).startswith("Readout in force: refitted on 90 reviewed cases")


def test_cli_refuses_when_every_reviewed_case_is_a_film_of_the_runs_split(tmp_path, capsys):
    wl, ckpt, _, _ = _overconfident(tmp_path, n=40)  # like the demo: its test split reviewed
    save_readout(_readout(file_sha256(ckpt)), ckpt)
    before = readout_path(ckpt).read_bytes()
    (tmp_path / "split.csv").write_text("image,patient,split\n" + "".join(
        f"c{i},{i},test\n" for i in range(40)))
    assert main(["calibrate", "--from-worklist", str(wl.path), "--checkpoint", str(ckpt)]) == 1
    assert "left out 40 reviewed case(s)" in capsys.readouterr().out
    assert readout_path(ckpt).read_bytes() == before
    assert not [f for f in tmp_path.glob("best.readout.*.pt") if f.name != "best.readout.pt"]


def test_cli_refuses_without_a_validation_readout(tmp_path, capsys):
    wl, ckpt, _, _ = _overconfident(tmp_path, n=12)
    assert main(["calibrate", "--from-worklist", str(wl.path), "--checkpoint", str(ckpt)]) == 1
    assert "has no readout to refit" in capsys.readouterr().err

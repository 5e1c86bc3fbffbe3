"""cxr/demo_reviews.py: the demo's simulated reviewer decides from the known labels, marks every
decision simulated under a name that says so, and never decides a queue twice."""
from __future__ import annotations

import sys
from pathlib import Path

from cxr.audit import audit_queue
from cxr.demo_reviews import REVIEWER, dataset_truth, simulate_reviews

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: review_cases
from review_cases import HASH, case, worklist  # noqa: E402


def test_simulated_reviews_follow_the_labels_and_are_marked(tmp_path, wl_target):
    rows = [case("a.png", calls={"Pneumothorax": "positive"}),  # right: agree
            case("b.png", calls={"Effusion": "positive"}),      # truth: Mass: disagree
            case("c.png"),                                       # truth: nothing: agree
            case("d.png")]                                       # not in the truth: skipped
    wl = worklist(tmp_path, rows, target=wl_target)  # on SQLite and on PostgreSQL
    truth = {"a.png": {"Pneumothorax"}, "b.png": {"Mass"}, "c.png": set()}
    assert simulate_reviews(wl, HASH, truth, n=10) == 3
    cases = wl.cases().set_index("image")
    assert cases.loc["a.png", "status"] == "agree" and cases.loc["c.png", "status"] == "agree"
    assert cases.loc["b.png", "status"] == "disagree"
    assert cases.loc["b.png", "corrected"] == '["Mass"]'
    assert cases.loc["d.png", "status"] == "pending"
    history = wl.export_table(history=True)
    assert set(history["reviewer"]) == {REVIEWER} and "simulated" in REVIEWER
    assert history["simulated"].astype(bool).all()
    assert audit_queue(wl, HASH, n_bootstrap=0)["throughput"]["n_simulated"] == 3
    assert simulate_reviews(wl, HASH, truth) == 0  # a decided queue is left alone
    assert len(wl.export_table(history=True)) == 3


def test_dataset_truth_reads_the_label_file(tmp_path):
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
        "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
        "00000001_000.png,Effusion|Mass,0,1,50,M,PA,1024,1024,0.14,0.14\n"
        "00000002_000.png,No Finding,0,2,40,F,AP,1024,1024,0.14,0.14\n")
    assert dataset_truth(tmp_path) == {"00000001_000.png": {"Effusion", "Mass"},
                                       "00000002_000.png": set()}

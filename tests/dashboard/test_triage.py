"""cxr/dashboard/triage.py: the Triage page's filters, case table, a case's numbers, the
checkpoint behind a case and the decision rule, on a small real worklist."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxr.dashboard import triage
from cxr.dashboard.runs import RunInfo
from cxr.labels import FINDINGS
from cxr.worklist import Worklist, file_sha256

LAST = len(FINDINGS) - 1  # the external case's top finding (images 0-3 have 0-3)


@pytest.fixture
def wl(tmp_path) -> Worklist:
    """Four cases with std (case i: max std 0.1 * i + 0.05, image i's top finding is finding i)
    from checkpoint "abc", and one without std from an external model."""
    probs = np.full((4, 14), 0.1)
    probs[np.arange(4), np.arange(4)] = 0.9
    frame = pd.DataFrame({"Image Index": [f"img{i}.png" for i in range(4)]})
    for j, f in enumerate(FINDINGS):
        frame[f"prob_{f}"] = probs[:, j]
    for f in FINDINGS:
        frame[f"std_{f}"] = [0.1 * i + 0.05 for i in range(4)]
    frame.to_csv(tmp_path / "p.csv", index=False)
    external = frame[["Image Index", *[f"prob_{f}" for f in FINDINGS]]].iloc[:1].copy()
    external["Image Index"] = "ext.png"
    external[[f"prob_{f}" for f in FINDINGS]] = 0.1
    external[f"prob_{FINDINGS[LAST]}"] = 0.8
    external.to_csv(tmp_path / "ext.csv", index=False)
    wl = Worklist(tmp_path / "wl.sqlite")
    wl.import_predictions(tmp_path / "p.csv", "fusion", "abc")
    wl.import_predictions(tmp_path / "ext.csv", "theirs", "ext")
    return wl


def test_any_and_the_slider_ends_filter_nothing(wl):
    assert len(triage.find_cases(wl)) == 5  # the case without std too
    assert triage.find_cases(wl)["image"].tolist()[:4] == [f"img{i}.png" for i in (3, 2, 1, 0)]
    middle = triage.find_cases(wl, uncertainty=(0.1, 0.3))
    assert middle["image"].tolist() == ["img2.png", "img1.png"]
    below = triage.find_cases(wl, uncertainty=(0.0, 0.3))  # the top moved: std is required
    assert sorted(below["image"]) == ["img0.png", "img1.png", "img2.png"]


def test_finding_status_and_sort_choices(wl):
    assert triage.find_cases(wl, finding=FINDINGS[LAST], min_prob=0.5)["image"].tolist() == \
        ["ext.png"]
    assert len(triage.find_cases(wl, finding=FINDINGS[LAST], min_prob=0.05)) == 5
    assert triage.find_cases(wl, status="agree").empty
    by_image = triage.find_cases(wl, sort="image", ascending=True)
    assert by_image["image"].tolist() == sorted(by_image["image"])
    first_finding = triage.find_cases(wl, sort=f"P({FINDINGS[0]})")
    assert first_finding["image"].iloc[0] == "img0.png"


def test_case_table_names_each_cases_top_finding(wl):
    cases = triage.find_cases(wl, sort="image", ascending=True)
    table = triage.case_table(cases)
    assert table["image"].tolist() == ["ext.png", "img0.png", "img1.png", "img2.png", "img3.png"]
    assert table["top finding"].tolist() == [FINDINGS[LAST], *FINDINGS[:4]]
    assert table["top P"].tolist() == pytest.approx([0.8, 0.9, 0.9, 0.9, 0.9])
    assert table["reviewer"].tolist() == [""] * 5 and table["uncertain"].dtype == bool
    assert list(table.columns[-14:]) == list(FINDINGS)
    assert table[FINDINGS[1]].tolist() == pytest.approx([0.1, 0.1, 0.9, 0.1, 0.1])


def test_the_table_and_caption_name_each_cases_rule(wl, tmp_path):
    table = triage.case_table(triage.find_cases(wl, sort="image", ascending=True))
    assert table["rule"].tolist() == ["", "mean", "mean", "mean", "mean"]  # ext: no std
    assert list(table.columns[4:6]) == ["uncertainty", "rule"]
    caption = triage.rules_caption(triage.find_cases(wl))
    assert "mean (uncertain when the mean MC-dropout std over the findings > 0.1): 4 case(s)" \
        in caption and "not comparable" not in caption
    assert "no case here has" in triage.rules_caption(triage.find_cases(wl, finding=FINDINGS[LAST],
                                                                        min_prob=0.5)).lower()
    frame = pd.read_csv(tmp_path / "p.csv")
    frame["Image Index"] = "any_" + frame["Image Index"]
    frame["uncertainty_rule"] = "any"
    frame.to_csv(tmp_path / "any.csv", index=False)
    wl.import_predictions(tmp_path / "any.csv", "fusion", "abc")
    assert "any (uncertain when some finding's" in triage.rules_caption(triage.find_cases(wl))
    assert "not comparable" in triage.rules_caption(triage.find_cases(wl))
    assert triage.DEFAULT_SORT == "uncertainty (image score, by rule)"
    assert triage.SORTS[triage.DEFAULT_SORT] == "uncertainty"


def test_case_probabilities_read_a_missing_std_as_zero(wl):
    cases = triage.find_cases(wl, sort="image", ascending=True)
    mean, std = triage.case_probabilities(cases.iloc[0])       # external: no std
    assert mean[LAST] == pytest.approx(0.8) and not std.any()
    mean, std = triage.case_probabilities(cases.iloc[2])       # img1
    assert mean.argmax() == 1 and std == pytest.approx(np.full(14, 0.15))


def test_checkpoint_for_finds_the_run_by_hash_once_per_file_version(tmp_path, monkeypatch):
    runs = []
    for name, content in (("a", b"weights a"), ("b", b"weights b"), ("untrained", None)):
        (tmp_path / name).mkdir()
        if content is not None:
            (tmp_path / name / "best.pt").write_bytes(content)
        runs.append(RunInfo(path=tmp_path / name, name=name, has_best=content is not None))
    target = file_sha256(tmp_path / "b" / "best.pt")
    hashed = []
    real = triage.file_sha256
    monkeypatch.setattr(triage, "file_sha256", lambda p: hashed.append(p) or real(p))
    triage._sha256.cache_clear()
    assert triage.checkpoint_for(target, runs) == tmp_path / "b" / "best.pt"
    assert triage.checkpoint_for(target, runs) == tmp_path / "b" / "best.pt"
    assert len(hashed) == 2  # a and b, each once: the second look-up hashed nothing
    assert triage.checkpoint_for("0" * 64, runs) is None
    (tmp_path / "b" / "best.pt").write_bytes(b"retrained b")  # a new version is hashed again
    assert triage.checkpoint_for(target, runs) is None


def test_disagree_without_findings_means_no_finding(wl):
    case = int(triage.find_cases(wl)["id"].iloc[0])
    triage.record_decision(wl, case, "disagree", "dr a", "", [])
    triage.record_decision(wl, case, "agree", "dr b", "", [])
    triage.record_decision(wl, case, "second_read", "dr c", "look again", ["Effusion"])
    corrected = wl.history(case)["corrected"].tolist()
    assert corrected[0] == "[]" and pd.isna(corrected[1])  # agree: nothing corrected
    assert json.loads(corrected[2]) == ["Effusion"]

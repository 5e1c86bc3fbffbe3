"""pages/4_Triage.py with the queue orders (issue 21 item 1) and PACS cases (issue 19 item 3), on
a hand-made worklist of the calibrated world's run: five cases whose calls were made with the
run's own readout at its high-sensitivity point, so each order has a known answer."""
from __future__ import annotations

import numpy as np
import pytest
from apptest_util import no_exception
from test_triage import PAGE, cases_table, select_row, shown_case

from cxr.labels import FINDINGS
from cxr.worklist import Worklist

PTX, EFF = FINDINGS.index("Pneumothorax"), FINDINGS.index("Effusion")
# image stem -> what makes it where it is (the case ids follow this order: 1..5)
QUIET, URGENT, UNSURE, OTHER, OOD = "quiet", "urgent", "unsure", "other", "ood"
NAMES = (QUIET, URGENT, UNSURE, OTHER, OOD)
STUDY = "1.2.826.0.1.3680043.8.498.1"


def hand_made(world, refs: bool = False) -> dict[str, int]:
    """A new worklist in place of the world's: the five cases of NAMES under the calibrated
    run's checkpoint (its queue, its readout), films from the world. Returns name -> case id."""
    from cxr.evaluation.predictions import ReadoutColumns, predictions_frame
    from cxr.hashing import file_sha256
    from cxr.readout import load_readout

    readout = load_readout(world.run_dir / "best.pt")
    t = readout.thresholds("sensitivity")
    cal = np.tile(np.where(np.isfinite(t), t / 2, 0.05), (5, 1))  # under every threshold
    cal[1, PTX] = cal[3, EFF] = 0.99
    calls = np.where(cal >= np.nan_to_num(t, nan=2.0), "positive", "negative").astype(object)
    score = np.array([0.01, 0.02, 0.30, 0.05, 0.10])
    std = np.repeat(score[:, None], 14, axis=1)  # the 'mean' rule: the score is their mean
    frame = predictions_frame(
        [f"{n}.png" for n in NAMES], cal, std, np.array([0, 0, 1, 0, 0], bool), score, "mean",
        ReadoutColumns(cal, calls, "sensitivity", np.array([2.0, 2.0, 2.0, 2.0, 30.0]),
                       np.array([0, 0, 0, 0, 1], bool)))
    frame["source"] = [str(f) for f in world.films[:5]]
    csv = world.root / "hand.csv"
    frame.to_csv(csv, index=False)
    world.worklist.unlink()
    wl = Worklist(world.worklist)
    dicom = {f"{n}.png": {"study_uid": f"{STUDY}.{i}", "series_uid": f"{STUDY}.{i}.1",
                          "sop_uid": f"{STUDY}.{i}.1.1", "study_date": f"2026112{i}"}
             for i, n in enumerate(NAMES)} if refs else None
    wl.import_predictions(csv, "fusion", file_sha256(world.run_dir / "best.pt"),
                          dicom_refs=dicom)
    cases = wl.cases()
    return {img.removesuffix(".png"): int(i) for img, i in zip(cases["image"], cases["id"])}


@pytest.fixture
def hand_world(tmp_path, calibrated_world):
    world = calibrated_world.copy_to(tmp_path / "world")
    return world, hand_made(world)


def captions(at) -> list[str]:
    return [c.value.replace("\\", "") for c in at.caption]


def test_urgent_first_by_default_with_each_cases_reason(app, hand_world):
    world, ids = hand_world
    at = app(world, PAGE)
    no_exception(at)
    assert at.selectbox(key="f_order").value == "urgent"
    table = cases_table(at)
    # urgent positive call; then uncertain and OOD (by uncertainty); other positive; the rest
    assert table["id"].tolist() == [ids[n] for n in (URGENT, UNSURE, OOD, OTHER, QUIET)]
    assert table.columns[:2].tolist() == ["id", "reason"]  # the reason right after the id
    reasons = dict(zip(table["id"], table["reason"]))
    assert reasons[ids[URGENT]] == "urgent: positive call for Pneumothorax (P 0.99)"
    assert reasons[ids[OOD]].startswith("out of distribution (score 30.0)")
    assert reasons[ids[OTHER]] == "positive call: Effusion"
    assert shown_case(at) == ids[URGENT]  # the first case of the order is the one shown
    text = captions(at)
    assert any(c.startswith("Urgent first: positive calls for Pneumothorax first") for c in text)
    assert "Readout in force: fitted on the run's validation split (" in " ".join(text)
    assert at.selectbox(key="f_sort").disabled  # the order sorts; the Sort by box waits
    # the case selection is by id: a click on row 3 shows that row's case ...
    select_row(at, 3)
    assert shown_case(at) == ids[OTHER]
    # ... and it stays shown when the order changes and its row moves
    at.selectbox(key="f_order").set_value("uncertain")
    at.run()
    no_exception(at)
    table = cases_table(at)
    assert table["id"].tolist() == [ids[n] for n in (UNSURE, OOD, OTHER, URGENT, QUIET)]
    assert shown_case(at) == ids[OTHER]
    assert not at.selectbox(key="f_sort").disabled


def test_urgent_findings_are_chosen_on_the_page(app, hand_world):
    world, ids = hand_world
    at = app(world, PAGE)
    at.multiselect(key="f_urgent").set_value(["Effusion"])
    at.run()
    no_exception(at)
    table = cases_table(at)
    assert table["id"].tolist()[0] == ids[OTHER]
    assert table["reason"].iloc[0] == "urgent: positive call for Effusion (P 0.99)"


def test_likely_negative_is_a_list_to_check_with_its_validation_sensitivity(app, hand_world):
    from cxr.readout import load_readout
    world, ids = hand_world
    at = app(world, PAGE)
    at.selectbox(key="f_order").set_value("likely-negative")
    at.run()
    no_exception(at)
    table = cases_table(at)
    assert table["id"].tolist() == [ids[QUIET]]  # uncertain, OOD and positive calls left out
    assert table["reason"].iloc[0].startswith("no positive call at the high-sensitivity point")
    readout = load_readout(world.run_dir / "best.pt")
    sens = [readout.points["sensitivity"][f].get("val_sensitivity") for f in readout.labels]
    sens = [s for s in sens if s is not None and np.isfinite(s)]
    [caption] = [c for c in captions(at) if c.startswith("Likely negative")]
    assert f"validation sensitivity >= {readout.target:.2f}" in caption
    assert f"it reached {min(sens):.2f} to {max(sens):.2f}" in caption
    assert "not a statement that a film has no finding" in caption
    shown = [e.value for kind in ("caption", "markdown", "warning", "info", "subheader")
             for e in getattr(at, kind)] + [s.label for s in at.selectbox] + \
        list(map(str, at.selectbox(key="f_order").options))
    assert not any("normal" in s.lower().replace("abnormal", "") for s in shown)


def test_the_operating_points_validation_rates_with_their_intervals(app, hand_world):
    from cxr.dashboard.points import interval_columns, point_caption
    from cxr.readout import load_readout
    world, _ = hand_world
    readout = load_readout(world.run_dir / "best.pt")
    at = app(world, PAGE)
    no_exception(at)
    expected = point_caption(readout, "sensitivity")  # the calls' point
    assert expected.startswith("High-sensitivity point: validation sensitivity ")
    assert expected in captions(at)
    [frame] = [d.value for d in at.dataframe if "finding" in d.value.columns]
    columns = interval_columns(readout, "sensitivity")
    assert frame["val sensitivity (95% CI)"].tolist() == columns["val sensitivity (95% CI)"]
    assert frame["val specificity (95% CI)"].tolist() == columns["val specificity (95% CI)"]
    assert any("(95% CI " in v for v in frame["val sensitivity (95% CI)"])


def test_likely_negative_without_a_readout_says_why(app, world):
    at = app(world, PAGE)  # the plain world: its queue came without a readout
    at.selectbox(key="f_order").set_value("likely-negative")
    at.run()
    no_exception(at)
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert warnings[0].startswith("the likely-negative list needs the high-sensitivity "
                                  "operating point's thresholds")
    assert not [d for d in at.dataframe if "uncertainty" in d.value.columns]  # no table
    # the case open before stays open, and the page says it left the list (never swapped)
    assert any("is no longer in this list" in w for w in warnings[1:])
    assert not any("No case matches" in i.value for i in at.info)


# -- issue 19 item 3: a PACS case's study, what was sent back, the site's viewer --------------
VIEWER = "http://viewer.test/viewer?StudyInstanceUIDs={study}"


def pacs_caption(at) -> str:
    [caption] = [c for c in captions(at) if c.startswith("PACS study ")]
    return caption


def test_a_pacs_case_shows_its_study_what_was_sent_and_a_viewer_link(app, tmp_path,
                                                                     calibrated_world,
                                                                     monkeypatch):
    from cxr.dashboard import plain
    from cxr.dashboard.triage import SIMULATED_MARK
    world = calibrated_world.copy_to(tmp_path / "world")
    ids = hand_made(world, refs=True)
    wl = Worklist(world.worklist)
    wl.mark_results_sent(ids[URGENT], "1.2.3.99")
    wl.record_decision(ids[URGENT], "agree", reviewer="demo reviewer (simulated)",
                       simulated=True)
    wl.mark_decision_sent(ids[URGENT])
    monkeypatch.setenv("CXR_VIEWER_URL", VIEWER)
    at = app(world, PAGE)
    no_exception(at)
    assert shown_case(at) == ids[URGENT]
    text = pacs_caption(at)
    assert text.startswith(f"PACS study {STUDY}.1, study date 2026-11-21. Results sent to the "
                           "PACS on ")
    assert "UTC (SR 1.2.3.99)" in text
    assert "The reviewer's decision sent to the PACS as an SR on " in text
    assert "newer decision" not in text
    [link] = at.get("link_button")
    assert link.proto.url == f"http://viewer.test/viewer?StudyInstanceUIDs={STUDY}.1"
    assert link.proto.label == "Open the study in the viewer"
    [table] = at.table  # the history marks the demo's simulated reviewer
    assert table.value["simulated"].tolist() == [plain.md(SIMULATED_MARK)]
    # a newer decision, not sent yet, is said to be so
    wl.record_decision(ids[URGENT], "disagree", reviewer="dr a", corrected=["Mass"])
    at.run()
    assert "; a newer decision (on " in pacs_caption(at)
    assert at.table[0].value["simulated"].tolist() == [plain.md(SIMULATED_MARK), ""]
    # another case: nothing sent, no decision
    select_row(at, 1)
    assert shown_case(at) == ids[UNSURE]
    text = pacs_caption(at)
    assert text == (f"PACS study {STUDY}.2, study date 2026-11-22. Results not sent to the PACS. "
                    "No decision yet to send.")
    # a mistyped template is a message naming the placeholder; no link, no traceback
    monkeypatch.setenv("CXR_VIEWER_URL", "http://viewer.test/v?patient={patient}")
    at.run()
    no_exception(at)
    assert not at.get("link_button")
    assert any("unknown placeholder(s) {patient}" in w.value.replace("\\", "")
               for w in at.warning)
    # no template: the page says how to have a link
    monkeypatch.delenv("CXR_VIEWER_URL")
    at.run()
    assert not at.get("link_button")
    assert pacs_caption(at).endswith("Set CXR_VIEWER_URL to link to the study in the site's "
                                     "viewer.")


def test_a_case_not_from_a_pacs_has_no_pacs_line(app, world):
    at = app(world, PAGE)
    no_exception(at)
    assert not [c for c in captions(at) if c.startswith("PACS study ")]
    assert not at.get("link_button")

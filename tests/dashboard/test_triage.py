"""cxr/dashboard/triage.py: the Triage page's filters, case table, a case's numbers, the
checkpoint behind a case and the decision rule, on a small real worklist."""
from __future__ import annotations

import json
import os

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
    assert table["OOD"].tolist() == [""] * 5 and table["positive calls"].tolist() == [""] * 5
    assert table["top finding"].tolist() == [FINDINGS[LAST], *FINDINGS[:4]]
    assert table["top P"].tolist() == pytest.approx([0.8, 0.9, 0.9, 0.9, 0.9])
    assert table["reviewer"].tolist() == [""] * 5 and table["uncertain"].dtype == bool
    assert list(table.columns[-14:]) == list(FINDINGS)
    assert table[FINDINGS[1]].tolist() == pytest.approx([0.1, 0.1, 0.9, 0.1, 0.1])


def test_the_table_and_caption_name_each_cases_rule(wl, tmp_path):
    table = triage.case_table(triage.find_cases(wl, sort="image", ascending=True))
    assert table["rule"].tolist() == ["", "mean", "mean", "mean", "mean"]  # ext: no std
    assert list(table.columns[5:7]) == ["uncertainty", "rule"]
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


# -- one model per queue; calls and the OOD flag -------------------------------------------------

@pytest.fixture
def two_models(tmp_path):
    """The same three films read by two runs: "fusion-a" (val AUC 0.80, with a readout: film i
    has i positive calls, film 2 out of distribution), "fusion-b" (0.85, no readout) and a
    densenet121 run (0.95, no readout); returns (worklist, runs)."""
    from cxr.evaluation.predictions import ReadoutColumns, predictions_frame
    runs, rng = [], np.random.default_rng(0)
    wl = Worklist(tmp_path / "wl.sqlite")
    for name, model, auc, readout in (("fusion-a", "fusion", 0.80, True),
                                      ("fusion-b", "fusion", 0.85, False),
                                      ("dense", "densenet121", 0.95, False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.pt").write_bytes(name.encode())
        runs.append(RunInfo(path=tmp_path / name, name=name, model=model, best_val_auc=auc,
                            has_best=True))
        calls = np.array([["positive" if j < i else "negative" for j in range(14)]
                          for i in range(3)], dtype=object)
        columns = ReadoutColumns(rng.random((3, 14)), calls, "youden", np.array([1.0, 2.0, 30.0]),
                                 np.array([False, False, True])) if readout else None
        std = np.full((3, 14), 0.05)
        predictions_frame([f"f{i}.png" for i in range(3)], rng.random((3, 14)), std, None,
                          std.mean(axis=1), "mean", columns).to_csv(tmp_path / f"{name}.csv",
                                                                    index=False)
        wl.import_predictions(tmp_path / f"{name}.csv", model,
                              file_sha256(tmp_path / name / "best.pt"))
    return wl, runs


def test_the_default_queue_is_the_best_fusion_runs_and_no_film_appears_twice(two_models):
    wl, runs = two_models
    assert len(wl.cases()) == 9  # every film three times in the worklist as a whole ...
    qs = triage.queues(wl, runs)
    assert [q.run for q in qs] == ["fusion-a", "fusion-b", "dense"]
    best = triage.default_queue(qs)
    assert best.run == "fusion-b" and best.val_auc == 0.85  # fusion first, then val AUC
    assert "fusion · fusion-b · val AUC 0.850 · 3 cases, 3 pending" == best.label
    for q in qs:  # ... and once in each queue
        images = triage.find_cases(wl, queue=q.checkpoint_hash)["image"]
        assert sorted(images) == ["f0.png", "f1.png", "f2.png"] and images.is_unique
    assert qs[0].operating_point == "youden" and qs[1].operating_point is None
    # no fusion queue: the best of all; a checkpoint that is not among the runs has no AUC
    assert triage.default_queue([q for q in qs if q.model != "fusion"]).run == "dense"
    assert triage.default_queue(triage.queues(wl, runs[:1] + runs[2:])).run == "fusion-a"
    orphan = [q for q in triage.queues(wl, runs[:1]) if q.run is None]
    assert len(orphan) == 2 and "not among the runs" in orphan[0].label
    assert triage.default_queue([]) is None


def test_calls_and_ood_filter_sort_and_show_in_the_table(two_models):
    wl, runs = two_models
    a = triage.queues(wl, runs)[0].checkpoint_hash
    find = lambda **kw: triage.find_cases(wl, queue=a, sort="image", ascending=True, **kw)  # noqa
    assert find(call="positive")["image"].tolist() == ["f1.png", "f2.png"]  # any positive call
    assert find(finding="Cardiomegaly", min_prob=0.0, call="positive")["image"].tolist() == \
        ["f2.png"]
    assert find(ood="out of distribution")["image"].tolist() == ["f2.png"]
    assert find(ood="in distribution")["image"].tolist() == ["f0.png", "f1.png"]
    by_calls = triage.find_cases(wl, queue=a, sort="positive calls")["image"].tolist()
    assert by_calls == ["f2.png", "f1.png", "f0.png"]
    assert triage.find_cases(wl, queue=a, sort="OOD score")["image"].iloc[0] == "f2.png"
    table = triage.case_table(find())
    assert table["OOD"].tolist() == ["", "", triage.OOD_MARK]
    assert table["positive calls"].tolist() == ["none", "Atelectasis", "Atelectasis, Cardiomegaly"]
    assert table["OOD score"].tolist() == [1.0, 2.0, 30.0]
    assert triage.case_calls(find().iloc[1])[:2] == ["positive", "negative"]
    b = triage.queues(wl, runs)[1].checkpoint_hash
    assert triage.case_calls(triage.find_cases(wl, queue=b).iloc[0]) is None
    assert triage.find_cases(wl, queue=b, call="positive").empty  # no readout: no calls


# -- issue 18 item 1: the selection is a case id; a stale form is refused ----------------------
def test_the_table_key_changes_with_the_list_of_cases():
    assert triage.table_key([3, 1, 2]) == triage.table_key([3, 1, 2])
    assert triage.table_key([3, 1, 2]) != triage.table_key([1, 2])  # a row left: a new table
    assert triage.table_key([3, 1, 2]) != triage.table_key([1, 3, 2])


def test_a_click_is_a_change_of_rows_under_the_same_key():
    ids, key = [7, 5, 9], triage.table_key([7, 5, 9])
    assert triage.clicked_case(ids, key, [2], (key, [0])) == 9
    assert triage.clicked_case(ids, key, [0], (key, [0])) is None   # nothing changed
    assert triage.clicked_case(ids, key, [1], None) is None         # first draw
    assert triage.clicked_case(ids, key, [1], ("cases_other", [0])) is None  # a new table
    assert triage.clicked_case(ids, key, [], (key, [1])) is None    # deselected: keep the case
    assert triage.clicked_case(ids, key, [5], (key, [0])) is None   # out of range


def test_the_selected_case_stays_while_listed_and_is_never_swapped_silently():
    assert triage.pick_case([4, 5, 6]) == triage.Pick(4, True)      # first visit: the first
    assert triage.pick_case([]) == triage.Pick(None, False)
    assert triage.pick_case([4, 6], selected=6) == triage.Pick(6, True)  # rows shifted
    assert triage.pick_case([4, 6], selected=5) == triage.Pick(5, False)  # left: kept, unlisted
    assert triage.pick_case([4, 6], selected=5, clicked=4) == triage.Pick(4, True)
    # a case just decided that left the list gives way to the next of the list it was in
    assert triage.pick_case([4, 6, 7], selected=5, saved=(5, [4, 5, 6, 7])) == \
        triage.Pick(6, True)
    assert triage.pick_case([4], selected=7, saved=(7, [4, 5, 6, 7])) == triage.Pick(4, True)
    assert triage.pick_case([], selected=7, saved=(7, [7])) == triage.Pick(None, False)
    assert triage.pick_case([4, 7], selected=7, saved=(7, [4, 7])) == triage.Pick(7, True)


def test_case_by_id_and_the_note_for_a_case_that_left_the_list(wl):
    case_id = int(triage.find_cases(wl)["id"].iloc[0])
    wl.record_decision(case_id, "agree", "dr **b**")
    case = triage.case_by_id(wl, case_id)
    assert int(case["id"]) == case_id and case["status"] == "agree"
    assert triage.case_by_id(wl, case_id, queue="ext") is None
    assert triage.case_by_id(wl, 10_000) is None
    note = triage.left_list_note(case, case_id)
    assert note.startswith(f"Case {case_id} is no longer in this list") and "dr **b**" in note
    assert "no longer in the worklist" in triage.left_list_note(None, case_id)


def test_form_keys_hold_the_case_and_the_generation():
    assert triage.form_key("note", 12, 0) != triage.form_key("note", 13, 0)
    assert triage.form_key("note", 12, 0) != triage.form_key("note", 12, 1)


def test_save_decision_refuses_a_stale_view_and_records_nothing(wl):
    from cxr.worklist import CaseChanged
    case_id = int(triage.find_cases(wl)["id"].iloc[0])
    assert triage.save_decision(wl, triage.Drawn(case_id, 0), case_id, "agree", "dr a", "", [])
    with pytest.raises(CaseChanged, match=rf"case {case_id} was decided by dr a at .* nothing "
                                          "was recorded"):
        triage.save_decision(wl, triage.Drawn(case_id, 0), case_id, "disagree", "dr b", "", [])
    with pytest.raises(CaseChanged, match="not drawn for case"):  # a form of another case
        triage.save_decision(wl, triage.Drawn(case_id + 1, 0), case_id, "agree", "dr b", "", [])
    with pytest.raises(CaseChanged, match="not drawn for case"):  # no form drawn at all
        triage.save_decision(wl, None, case_id, "agree", "dr b", "", [])
    assert wl.history(case_id)["reviewer"].tolist() == ["dr a"]
    triage.save_decision(wl, triage.Drawn(case_id, 1), case_id, "disagree", "dr b", "", [])
    assert wl.history(case_id)["reviewer"].tolist() == ["dr a", "dr b"]


# -- issue 18 item 11: a failed write is a message, not a traceback ----------------------------
@pytest.mark.parametrize("error, says", [
    (OSError(28, "No space left on device"), "the disk holding the worklist is full"),
    (__import__("sqlite3").OperationalError("database or disk is full"), "is full"),
    (__import__("sqlite3").OperationalError("attempt to write a readonly database"),
     "read-only"),
    (__import__("sqlite3").OperationalError("disk I/O error"),
     "could not be written (disk I/O error)")])
def test_a_failed_write_is_a_save_failed_that_says_nothing_was_recorded(wl, monkeypatch,
                                                                         error, says):
    case_id = int(triage.find_cases(wl)["id"].iloc[0])

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(Worklist, "record_decision", fail)
    with pytest.raises(triage.SaveFailed) as exc:
        triage.save_decision(wl, triage.Drawn(case_id, 0), case_id, "agree", "dr a", "x", [])
    assert str(exc.value).startswith("Nothing was recorded: ") and says in str(exc.value)
    assert "kept in the form" in str(exc.value)


def test_a_sqlalchemy_error_shows_only_the_databases_reason():
    from sqlalchemy.exc import OperationalError
    exc = OperationalError("INSERT INTO decisions (note) VALUES ('secret note')", {},
                           __import__("sqlite3").OperationalError("database or disk is full"))
    text = triage.write_problem(exc)
    assert "full" in text and "secret note" not in text and "INSERT" not in text


# -- issue 18 item 8: films only through load_image, only under the image roots -----------------
def test_image_roots_are_the_data_folder_and_cxr_image_roots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    env = {"CXR_IMAGE_ROOTS": f"{a}{os.pathsep}{b}{os.pathsep}"}
    assert triage.image_roots(tmp_path / "data", env) == (tmp_path / "data", a, b)
    assert triage.image_roots(tmp_path / "data", {}) == (tmp_path / "data",)


def film_png(path, size: int = 96):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), 128, np.uint8)).save(path)
    return path


def test_a_film_outside_the_roots_is_not_opened(tmp_path, monkeypatch):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    inside = film_png(root / "images" / "f.png")
    away = film_png(outside / "g.png")
    (root / "images" / "link.png").symlink_to(away)  # a link out of the roots is outside
    roots = triage.image_roots(root, {})
    assert triage.load_film(str(inside), roots).pixels.shape == (96, 96)
    opened, real_load = [], triage.load_image

    def spy(path, *args, **kwargs):  # the one route by which a film is read
        opened.append(str(path))
        return real_load(path, *args, **kwargs)
    monkeypatch.setattr(triage, "load_image", spy)
    triage.load_film(str(inside), roots)
    assert opened == [str(inside.resolve())]
    opened.clear()
    for path in (str(away), str(root / "images" / "link.png"), "/etc/passwd",
                 str(root / ".." / "elsewhere" / "g.png")):
        with pytest.raises(triage.FilmUnavailable, match="outside the image folders"):
            triage.load_film(path, roots)
    assert opened == []
    monkeypatch.undo()
    with pytest.raises(triage.FilmUnavailable, match="no film path"):
        triage.load_film(None, roots)
    with pytest.raises(triage.FilmUnavailable, match="not at its recorded path"):
        triage.load_film(str(root / "images" / "gone.png"), roots)
    assert triage.load_film(str(away), triage.image_roots(
        root, {"CXR_IMAGE_ROOTS": str(outside)})).pixels.shape == (96, 96)


def test_a_film_is_read_with_load_images_size_limit(tmp_path):
    from cxr.data.images import MAX_FILE_BYTES, ImageLoadError
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: no disk used, and never read
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImageLoadError, match="file too large"):
        triage.load_film(str(big), (tmp_path,))


# -- issue 20 item 4: claims -----------------------------------------------------------------
def test_claims_are_taken_shown_to_others_and_expire(tmp_path, wl):
    from datetime import datetime, timedelta, timezone
    now = [datetime(2026, 12, 8, 10, 0, tzinfo=timezone.utc)]
    clocked = Worklist(wl.path, clock=lambda: now[0])
    case_id = int(triage.find_cases(clocked)["id"].iloc[0])
    assert triage.claim_case(clocked, case_id, "  ") is None  # no name yet: nothing claimed
    mine = triage.claim_case(clocked, case_id, "dr a")
    assert mine.mine and triage.claim_note(mine) is None
    theirs = triage.claim_case(clocked, case_id, "dr b")
    assert not theirs.mine and theirs.holder == "dr a"
    assert triage.claim_note(theirs).startswith("Being reviewed by dr a until 10:05 UTC: ")
    table = triage.case_table(triage.find_cases(clocked, sort="image", ascending=True))
    assert table.loc[table["id"] == case_id, "claimed by"].item() == "dr a"
    now[0] += timedelta(minutes=4)  # dr a reruns: renewed until 10:09
    assert triage.claim_case(clocked, case_id, "dr a").expires_at.startswith("2026-12-08T10:09")
    now[0] += timedelta(minutes=6)  # ... then goes quiet: it runs out, dr b takes it
    assert triage.claim_case(clocked, case_id, "dr b").mine
    triage.release_claim(clocked, case_id, "dr a")  # not dr a's any more: left as it is
    assert not triage.claim_case(clocked, case_id, "dr a").mine
    triage.release_claim(clocked, case_id, "dr b")
    assert triage.claim_case(clocked, case_id, "dr a").mine
    assert triage.clock_time("2026-12-08T23:59:30.5+00:00") == "23:59 UTC"


def test_worklist_problems_in_words():
    from cxr.worklist import SchemaMismatch, WorklistUnavailable
    gone = WorklistUnavailable("the worklist database postgresql://x:***@h/db cannot be reached.")
    assert triage.worklist_problem(gone).startswith("The worklist is not available right now: ")
    old = SchemaMismatch("worklist w.sqlite is at 0001: run `cxr worklist upgrade --db w.sqlite`")
    assert "cxr worklist upgrade --db w.sqlite" in triage.worklist_problem(old)
    assert triage.worklist_problem(KeyError("x")) is None


def test_kept_inputs_are_the_form_and_the_filters_without_defaults():
    state = {"d_note_12_0": "typed", "d_reviewer": "dr a", "f_status": "pending",
             "f_queue": "abc", "f_unc": (0.0, 0.5), "triage_case": 12, 3: "x"}
    assert triage.kept_inputs(state) == {"d_note_12_0": "typed", "d_reviewer": "dr a",
                                         "f_status": "pending"}


def test_the_history_table_is_escaped_for_st_table(wl):
    case_id = int(triage.find_cases(wl)["id"].iloc[0])
    wl.record_decision(case_id, "disagree", "dr **a**", note="![x](http://h/x.png)",
                       corrected=["Mass"])
    wl.record_decision(case_id, "agree", "dr b")
    table = triage.history_table(wl.history(case_id))
    assert list(table.columns) == ["created_at", "reviewer", "decision", "corrected", "note",
                                   "simulated"]
    assert table["simulated"].tolist() == ["", ""]  # real reviewers
    assert table["note"].tolist() == ["\\!\\[x\\]\\(http://h/x.png\\)", ""]
    assert table["reviewer"].tolist() == ["dr \\*\\*a\\*\\*", "dr b"]
    assert table["corrected"].tolist() == ['\\["Mass"\\]', ""]


def test_a_claim_that_cannot_be_written_is_a_claim_failed(wl, monkeypatch):
    case_id = int(triage.find_cases(wl)["id"].iloc[0])

    def full(*args, **kwargs):
        raise OSError(f"worklist {wl.path}: database or disk is full")
    monkeypatch.setattr(Worklist, "claim_case", full)
    monkeypatch.setattr(Worklist, "release_claim", full)
    with pytest.raises(triage.ClaimFailed, match=r"could not be claimed for you \(the disk "
                                                 r"holding the worklist is full\)"):
        triage.claim_case(wl, case_id, "dr a")
    with pytest.raises(triage.ClaimFailed):
        triage.release_claim(wl, case_id, "dr a")


# -- issue 19 item 3: what the page says about a PACS case -----------------------------------
PACS_CASE = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5",
             "study_date": "20261120", "results_sent_at": "2026-12-01T10:31:00+00:00",
             "result_sr_uid": "9.8.7", "decision_sent_at": float("nan"),
             "decided_at": float("nan")}


def test_pacs_info_of_a_pacs_case():
    info = triage.pacs_info(pd.Series(PACS_CASE), "http://v/viewer?StudyInstanceUIDs={study}")
    assert info.lines == ("PACS study 1.2.3, study date 2026-11-20",
                          "Results sent to the PACS on 2026-12-01 at 10:31 UTC (SR 9.8.7)",
                          "No decision yet to send")
    assert info.link == "http://v/viewer?StudyInstanceUIDs=1.2.3" and info.link_problem is None
    decided = {**PACS_CASE, "decided_at": "2026-12-02T09:00:00+00:00"}
    assert triage.pacs_info(decided, None).lines[2] == (
        "The reviewer's decision is not sent to the PACS (cxr pacs push-decisions)")
    sent = {**decided, "decision_sent_at": "2026-12-02T09:05:00+00:00"}
    assert triage.pacs_info(sent, None).lines[2].endswith("as an SR on 2026-12-02 at 09:05 UTC")
    newer = {**sent, "decided_at": "2026-12-03T08:00:00+00:00"}
    assert triage.pacs_info(newer, None).lines[2].endswith(
        "; a newer decision (on 2026-12-03 at 08:00 UTC) is not sent yet")


def test_pacs_info_without_a_study_a_template_or_a_good_one():
    assert triage.pacs_info({**PACS_CASE, "study_uid": float("nan")}, "x{study}") is None
    assert triage.pacs_info({**PACS_CASE, "study_uid": None}, "x{study}") is None
    none = triage.pacs_info({**PACS_CASE, "study_date": None, "results_sent_at": None}, None)
    assert none.lines[:2] == ("PACS study 1.2.3, study date not recorded",
                              "Results not sent to the PACS")
    assert none.link is None and none.lines[-1].startswith("Set CXR_VIEWER_URL")
    bad = triage.pacs_info(PACS_CASE, "http://v/?p={patient}")
    assert bad.link is None and "unknown placeholder(s) {patient}" in bad.link_problem
    assert triage.viewer_template({"CXR_VIEWER_URL": "  "}) is None
    assert triage.viewer_template({"CXR_VIEWER_URL": " http://v/{study} "}) == "http://v/{study}"


def test_queue_points_and_the_history_marks_simulated_decisions():
    from types import SimpleNamespace
    readout = SimpleNamespace(points={"sensitivity": {}, "youden": {}})
    assert triage.queue_points("sensitivity", readout) == ["sensitivity"]
    assert triage.queue_points("specificity,youden", readout) == ["youden"]
    assert triage.queue_points(None, readout) == [] and triage.queue_points("youden", None) == []
    history = pd.DataFrame({"created_at": ["t1", "t2"], "reviewer": ["sim", "dr a"],
                            "decision": ["agree", "agree"], "corrected": [None, None],
                            "note": ["", ""], "simulated": [True, False]})
    assert triage.history_table(history)["simulated"].tolist() == [
        "simulated \\(the demo's reviewer\\)", ""]

"""`cxr pacs pull` and `push-decisions` end to end against a real Orthanc (tests/pacs/orthanc.py):
what is predicted, what is explained, what comes back into the PACS, and what never leaves it."""
from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instances as I
import orthanc as O

from cxr.cli import main
from cxr.labels import FINDINGS
from cxr.pacs.client import Pacs, tag
from cxr.pacs.sr import read_result
from cxr.worklist import CAL, PROB, STD, Worklist

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PASSES = 5


SAID: list[str] = []  # everything the commands below printed, for the last test


def _cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(list(argv))
    SAID.append(out.getvalue())
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def pulled(orthanc, checkpoint, tmp_path_factory):
    """One chest study and one CT study stored, one `cxr pacs pull` with overlays."""
    mp = pytest.MonkeyPatch()
    for key in ("CXR_DICOMWEB_TOKEN", "CXR_DICOMWEB_AUTH_FILE"):
        mp.delenv(key, raising=False)
    mp.setenv("CXR_DICOMWEB_USER", O.USER)
    mp.setenv("CXR_DICOMWEB_PASSWORD", O.PASSWORD)
    root = tmp_path_factory.mktemp("pull")
    study, ct = I.chest_study(seed=0), I.ct_study()
    for data in [*study["files"].values(), *ct["files"].values()]:
        orthanc.store(data)
    args = ["pacs", "pull", "--url", orthanc.dicomweb, "--since", "2025-01-01",
            "--checkpoint", str(checkpoint), "--db", str(root / "wl.sqlite"),
            "--out", str(root / "out"), "--passes", str(PASSES), "--secondary-capture"]
    rc, text = _cli(*args)
    yield {"root": root, "study": study, "ct": ct, "rc": rc, "log": text, "args": args,
           "pacs": Pacs.connect(orthanc.dicomweb), "db": root / "wl.sqlite"}
    mp.undo()


def test_pull_predicts_exactly_the_frontal_films_and_explains_the_rest(pulled):
    study = pulled["study"]
    assert pulled["rc"] == 0, pulled["log"]
    assert "6 instances: 2 predicted, 4 not usable (errors.csv), 0 already done" in pulled["log"]
    cases = Worklist(pulled["db"]).cases()
    assert sorted(cases["image"]) == sorted(study["frontal"])
    assert set(cases["study_uid"]) == {study["study_uid"]}
    assert set(cases["study_date"]) == {I.STUDY_DATE}
    for row in cases.itertuples():
        assert row.sop_uid == row.image and row.series_uid.startswith("1.2.")
    errors = pd.read_csv(pulled["root"] / "out" / study["study_uid"] / "errors.csv")
    reasons = {f.split("/")[-1]: e for f, e in zip(errors["file"], errors["error"])}
    kinds = {study["kinds"][sop]: reason for sop, reason in reasons.items()}
    assert set(kinds) == {"dx_lateral", "dx_multiframe", "ct", "sr"}
    assert "not a frontal (PA/AP) chest film" in kinds["dx_lateral"]
    assert "multi-frame DICOM (2 frames)" in kinds["dx_multiframe"]
    assert "Modality is 'CT'" in kinds["ct"]
    assert "no pixel data" in kinds["sr"]
    items = Worklist(pulled["db"]).work_items()
    assert list(items["key"]) == [study["study_uid"]]  # the CT-only study is never searched
    assert list(items["state"]) == ["done"]


def _results(pulled, sop_class):
    pacs, study = pulled["pacs"], pulled["study"]["study_uid"]
    rows = pacs.instances(study, sop_class=sop_class)
    return [pacs.instance(study, tag(r, "SeriesInstanceUID"), tag(r, "SOPInstanceUID"))
            for r in rows]


def test_the_srs_are_in_the_study_and_say_what_the_worklist_and_cxr_predict_say(
        pulled, checkpoint, tmp_path):
    srs = {read_result(sr)["source_sop"]: sr for sr in _results(pulled, COMPREHENSIVE_SR)}
    assert sorted(srs) == sorted(pulled["study"]["frontal"])
    cases = Worklist(pulled["db"]).cases().set_index("image")
    # the same films through `cxr predict`, named by their SOP Instance UID (the same seed)
    films = tmp_path / "films"
    films.mkdir()
    for sop in srs:
        (films / sop).write_bytes(pulled["study"]["files"][pulled["study"]["kinds"][sop]])
    rc, text = _cli("predict", "--checkpoint", str(checkpoint), str(films), "--out",
                    str(tmp_path / "pred"), "--passes", str(PASSES))
    assert rc == 0, text
    predicted = pd.read_csv(tmp_path / "pred" / "predictions.csv").set_index("Image Index")
    for sop, sr in srs.items():
        case, expected, got = cases.loc[sop], predicted.loc[sop], read_result(sr)
        assert sr.StudyInstanceUID == pulled["study"]["study_uid"]
        assert case.result_sr_uid == sr.SOPInstanceUID and isinstance(case.results_sent_at, str)
        for i, finding in enumerate(FINDINGS):
            values = got["findings"][finding]
            for kind, column in (("mean", PROB[i]), ("std", STD[i]), ("calibrated", CAL[i])):
                assert values[kind] == pytest.approx(case[column], rel=1e-9, abs=1e-12)
                assert values[kind] == pytest.approx(expected[column], rel=1e-6, abs=1e-9)
            assert values["call"] == case[f"call_{finding}"] == expected[f"call_{finding}"]
            assert "threshold" in values or values["call"] == "n/a"
        film = got["film"]
        assert film["ood"] == bool(case.ood) == bool(expected["ood"])
        assert film["ood_score"] == pytest.approx(expected["ood_score"], rel=1e-6)
        assert film["uncertainty"] == pytest.approx(expected["uncertainty"], rel=1e-6)
        assert film["rule"] == case.uncertainty_rule == "mean"
        assert got["algorithm"][0] == "CXR Review simple_cnn"
        assert f"checkpoint sha256 {case.checkpoint_hash}" in got["algorithm"]
        assert "readout cxr-readout 1" in got["algorithm"]
        assert "research use only, not for diagnosis" in sr.SeriesDescription
        assert "research use only, not for diagnosis" in got["comment"]
        if film["ood"]:  # says so first: series description and the comment begin with it
            assert sr.SeriesDescription.startswith("OUT OF DISTRIBUTION")
            assert got["comment"].startswith("OUT OF DISTRIBUTION")


def test_the_sr_copies_patient_and_study_but_not_the_accession_number(pulled):
    for sr in _results(pulled, COMPREHENSIVE_SR):
        assert str(sr.PatientName) == I.D.PLANTED["PatientName"]  # filed under the patient
        assert sr.PatientID == I.D.PLANTED["PatientID"]
        assert sr.AccessionNumber == ""
        report = hd.sr.ComprehensiveSR.from_dataset(sr)
        groups = report.content.get_image_measurement_groups()
        assert len(groups) == 1 + len(FINDINGS)
        assert groups[0].finding_type.meaning == "Whole film"


def test_dsrdump_prints_the_sr_without_errors(pulled, tmp_path):
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK's dsrdump is not installed (Debian package dcmtk)")
    sr = _results(pulled, COMPREHENSIVE_SR)[0]
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    done = subprocess.run(["dsrdump", str(tmp_path / "sr.dcm")], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "E:" not in done.stderr and "W:" not in done.stderr, \
        done.stderr
    assert "Imaging Measurement Report" in done.stdout
    assert "research use only, not for diagnosis" in done.stdout


def test_the_overlay_is_its_own_series_with_the_warning(pulled):
    [*overlays] = _results(pulled, SECONDARY_CAPTURE)
    assert len(overlays) == 2
    for sc in overlays:
        assert sc.SeriesDescription == "CXR Review overlay" and sc.BurnedInAnnotation == "YES"
        assert sc.AccessionNumber == "" and sc.pixel_array.shape[2] == 3
        banner = sc.pixel_array[:20].astype(int)  # the text is drawn: not a black banner
        assert (banner.max(axis=2) > 128).sum() > 50


def test_a_second_pull_does_nothing_new(pulled, orthanc):
    before = len(orthanc.rest("/instances"))
    rc, text = _cli(*pulled["args"])
    assert rc == 0, text
    assert "1 studies found, 0 new for this checkpoint; 0 studies, 0 instances" in text
    assert len(orthanc.rest("/instances")) == before
    assert len(Worklist(pulled["db"]).cases()) == 2


def test_push_decisions_sends_an_sr_referencing_the_models(pulled):
    wl = Worklist(pulled["db"])
    case = wl.cases(sort="image", ascending=True).iloc[0]
    wl.record_decision(int(case.id), "disagree", reviewer="dr reviewer",
                       corrected=["Effusion"], note="blunted angle")
    args = ["pacs", "push-decisions", "--url", pulled["args"][3], "--db", str(pulled["db"])]
    rc, text = _cli(*args)
    assert rc == 0 and "1 decisions sent" in text, text
    decisions = [sr for sr in _results(pulled, COMPREHENSIVE_SR)
                 if sr.SeriesDescription.startswith("CXR Review decision")]
    [sr] = decisions
    items = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert str(items["Person Observer Name"].PersonName) == "dr reviewer^"  # one component
    assert items["Reviewer decision"].ConceptCodeSequence[0].CodeMeaning == "disagree"
    assert items["Finding present (reviewer)"].ConceptCodeSequence[0].CodeMeaning == "Effusion"
    assert items["Reviewer note"].TextValue == "blunted angle"
    ref = items["Model results reviewed"].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == case.result_sr_uid
    assert isinstance(wl.cases().set_index("id").loc[int(case.id)].decision_sent_at, str)
    rc, text = _cli(*args)
    assert "0 decisions sent" in text


def test_results_held_back_by_no_push_are_sent_by_the_next_pull(pulled, orthanc):
    study = I.single_film_study(seed=30)
    orthanc.store(study["files"]["dx_pa"])
    args = [*pulled["args"][:4], "--study", study["study_uid"], *pulled["args"][6:]]
    rc, text = _cli(*args, "--no-push")
    assert rc == 0 and "1 instances: 1 predicted" in text and "0 results sent" in text, text
    pacs, uid = pulled["pacs"], study["study_uid"]
    assert pacs.instances(uid, sop_class=COMPREHENSIVE_SR) == []
    rc, text = _cli(*args)
    assert rc == 0 and "0 new for this checkpoint" in text and "1 results sent" in text, text
    [row] = pacs.instances(uid, sop_class=COMPREHENSIVE_SR)
    case = Worklist(pulled["db"]).cases().set_index("image").loc[study["frontal"][0]]
    assert case.result_sr_uid == tag(row, "SOPInstanceUID")


def test_wrong_credentials_end_the_pull_with_one_line(pulled, monkeypatch):
    monkeypatch.setenv("CXR_DICOMWEB_PASSWORD", "not-the-Pa55word")
    rc, text = _cli(*pulled["args"])
    assert rc == 1
    [line] = [t for t in text.splitlines() if "error" in t]
    assert line.startswith(f"cxr pacs pull: error: {pulled['args'][3]}: search for studies "
                           "failed: HTTP 401")
    assert "Traceback" not in text and "Pa55word" not in text


def test_no_planted_identifier_in_anything_cxr_wrote(pulled):
    """Last in the module: every file the pulls and pushes above wrote outside Orthanc
    (worklist database included) and everything they said."""
    assert len(SAID) >= 8  # pulls, predict, push-decisions
    texts = {"log": "\n".join(SAID)}
    for path in pulled["root"].rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    names = {Path(k).name for k in texts}
    assert {"log", "wl.sqlite", "predictions.csv", "errors.csv", "readout.json"} <= names
    for where, text in texts.items():
        for secret in I.SECRETS:
            assert secret.lower() not in text.lower(), f"{secret} in {where}"
    assert "Traceback" not in texts["log"]

"""`cxr pacs push-decisions`: a reviewer's decision back to the PACS, as a Comprehensive SR in the
film's study that references the model's SR it reviews.

    >>> push_decisions(pacs, "data/worklist.sqlite")      # -> how many decisions were sent

Sent: every case whose model results are in the PACS (result_sr_uid) and whose latest decision
is newer than the last one sent (decision_sent_at). The SR's content, under the title "Review of
model results" (private scheme 99CXR, cxr.pacs.sr): the reviewer as the person observer
(DCM 121008 Person Observer Name), the warning as a comment, the decision (agree / disagree /
second_read), each finding the reviewer says is present (none: "No Finding"), the reviewer's
note, a reference to the model's SR (COMPOSITE) and to the film (IMAGE). Patient and study
modules come from the film, as for the model's SR; the accession number is emptied.
"""
from __future__ import annotations

import json

import highdicom as hd
import pandas as pd
from pydicom.dataelem import DataElement
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from cxr.pacs.client import Pacs, tag
from cxr.pacs.sr import (
    ACCESSION,
    COMMENT,
    DECISION_SERIES,
    MANUFACTURER,
    WARNING,
    _declare_scheme,
    code,
    finding_code,
)

TITLE = code("REVIEW", "Review of model results")
DECISION = code("DECISION", "Reviewer decision")
PRESENT = code("PRESENT", "Finding present (reviewer)")
NOTE = code("NOTE", "Reviewer note")
MODEL_SR = code("MODELSR", "Model results reviewed")
FILM = code("FILM", "Film reviewed")
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def pending(worklist, reviewer: str | None = None) -> pd.DataFrame:
    """Cases with a decision not yet sent and model results in the PACS."""
    cases = worklist.cases()
    keep = cases["result_sr_uid"].notna() & (cases["status"] != "pending")
    sent = cases["decision_sent_at"]
    keep &= sent.isna() | (cases["decided_at"].astype(str) > sent.astype(str))
    if reviewer is not None:
        keep &= cases["reviewer"] == reviewer
    return cases[keep]


def decision_sr(source, model_sr, case) -> hd.sr.ComprehensiveSR:
    """The SR of one case's latest decision (a row of Worklist.cases())."""
    root = hd.sr.ContainerContentItem(TITLE)
    name = str(case.reviewer) if "^" in str(case.reviewer) else f"{case.reviewer}^"  # one part
    person = hd.sr.PnameContentItem(codes.DCM.PersonObserverName, name,
                                    relationship_type="HAS OBS CONTEXT")
    observer = hd.sr.CodeContentItem(codes.DCM.ObserverType, codes.DCM.Person,
                                     relationship_type="HAS OBS CONTEXT")
    items = [observer, person,
             hd.sr.TextContentItem(COMMENT, f"Reviewer's decision on CXR Review model results: "
                                   f"{WARNING}.", relationship_type="CONTAINS"),
             hd.sr.CodeContentItem(DECISION, code(str(case.status)), relationship_type="CONTAINS")]
    corrected = json.loads(case.corrected) if isinstance(case.corrected, str) else None
    if corrected is not None:
        for finding in corrected or ["No Finding"]:
            items.append(hd.sr.CodeContentItem(PRESENT, finding_code(finding),
                                               relationship_type="CONTAINS"))
    if isinstance(case.note, str) and case.note.strip():
        items.append(hd.sr.TextContentItem(NOTE, case.note.strip()[:1024],
                                           relationship_type="CONTAINS"))
    items.append(hd.sr.CompositeContentItem(MODEL_SR, model_sr.SOPClassUID,
                                            model_sr.SOPInstanceUID, relationship_type="CONTAINS"))
    items.append(hd.sr.ImageContentItem(FILM, source.SOPClassUID, source.SOPInstanceUID,
                                        relationship_type="CONTAINS"))
    root.ContentSequence = items
    sr = hd.sr.ComprehensiveSR(
        evidence=[source, model_sr], content=root, series_instance_uid=generate_uid(),
        series_number=992, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"{DECISION_SERIES} - {WARNING}")
    _declare_scheme(sr)
    sr[ACCESSION] = DataElement(ACCESSION, "SH", "")  # new: highdicom shares the source's
    return sr


def push_decisions(pacs: Pacs, db, reviewer: str | None = None, log=print) -> int:
    from cxr.worklist import Worklist

    worklist = Worklist(db)
    sent = 0
    for case in pending(worklist, reviewer).itertuples():
        source = pacs.instance(case.study_uid, case.series_uid, case.sop_uid)
        [row] = pacs.instances(case.study_uid, sop_uid=case.result_sr_uid) or [None]
        if row is None:
            log(f"case {case.id}: the model's SR {case.result_sr_uid} is no longer in the PACS; "
                "decision not sent")
            continue
        model_sr = pacs.instance(case.study_uid, tag(row, "SeriesInstanceUID"), case.result_sr_uid)
        pacs.store([decision_sr(source, model_sr, case)], str(case.study_uid))
        worklist.mark_decision_sent(int(case.id))
        sent += 1
    return sent

"""The model's results for one film as a DICOM Comprehensive SR (highdicom), in the film's study.

    >>> from cxr.pacs.sr import Algorithm, result_sr, read_result
    >>> sr = result_sr(source, pred, Algorithm("fusion", sha, "0.1.0", "cxr-readout 1"), readout)
    >>> read_result(sr)["findings"]["Effusion"]["calibrated"]      # what the SR says, back

Template: TID 1500 "Measurement Report" (highdicom.sr.MeasurementReport), the template DICOM
gives for image-derived measurements and the one IHE's AI Results profile builds on. Its
TID 1501 "Measurements and Qualitative Evaluations" groups
fit a per-image, per-finding classifier output: no region (TID 1410/1411 need one; a Grad-CAM
heatmap is no segmentation), numbers with units, and coded evaluations. So:
  - the first group is the film as a whole, and its first item is whether the film is out of
    distribution (what a reader must know first); then the OOD score, the image's uncertainty
    score and the rule in force;
  - then one group per finding (finding type = the finding), each with the calibrated
    probability, the MC-dropout mean and std, the threshold of the operating point, and the
    call at it as a coded evaluation (positive / negative / uncertain / n/a);
  - every group names the algorithm (TID 4019: model name, project version, and as parameters
    the checkpoint's sha256 and the readout version) and references the source image;
  - the observer is a device (the model), never a person.
The words "research use only, not for diagnosis" are in the series description (what every
viewer lists; an OOD film's begins with "OUT OF DISTRIBUTION") and in a comment before the
measurements (an OOD film's comment begins with that too). The findings and results have no
standard codes (SNOMED has no "model probability of Infiltration"), so they use the private
coding scheme 99CXR ("99" marks a private scheme, PS3.16 8.2), declared in the SR's Coding
Scheme Identification Sequence.

Patient and study modules are copied from the source film by highdicom (DICOM requires them for
the SR to file under the right study); the accession number is emptied unless `keep_accession`
(it is an identifier). Nothing of them is returned by read_result.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

SCHEME = "99CXR"
MANUFACTURER = "CXR Review (research software)"
WARNING = "research use only, not for diagnosis"
RESULT_SERIES = "CXR Review results"  # SeriesDescription prefix of the model's SRs
DECISION_SERIES = "CXR Review decision"
OOD_FIRST = "OUT OF DISTRIBUTION"
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Plain X-ray of chest")
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
ACCESSION = 0x00080050


def code(value: str, meaning: str | None = None) -> hd.sr.CodedConcept:
    """A concept of the private scheme: value = the finding's or quantity's name."""
    return hd.sr.CodedConcept(value.replace(" ", "_")[:16].upper(), SCHEME, meaning or value)


QUANTITIES = {"calibrated": code("CALPROB", "Calibrated probability"),
              "mean": code("MCMEAN", "MC-dropout mean probability"),
              "std": code("MCSTD", "MC-dropout standard deviation"),
              "threshold": code("THRESHOLD", "Decision threshold (calibrated scale)"),
              "ood_score": code("OODSCORE", "Out-of-distribution score"),
              "uncertainty": code("UNCERTAINTY", "Image uncertainty score")}
CALL = code("CALL", "Call at the operating point")
OOD = code("OOD", "Out of distribution")
RULE = code("RULE", "Image uncertainty rule")
WHOLE_FILM = code("WHOLEFILM", "Whole film")
CALL_VALUES = {c: code(c.replace("/", ""), c) for c in ("positive", "negative", "uncertain", "n/a")}
YES_NO = {True: codes.SCT.Yes, False: codes.SCT.No}


@dataclass(frozen=True)
class Algorithm:
    """What made the results (TID 4019 Algorithm Identification)."""
    model: str
    checkpoint_sha256: str
    project_version: str
    readout_version: str  # "cxr-readout 1", or "none" for a checkpoint without a readout

    def identification(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=f"CXR Review {self.model}"[:64], version=self.project_version,
            parameters=[f"checkpoint sha256 {self.checkpoint_sha256}",
                        f"readout {self.readout_version}"])


def finding_code(finding: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(finding.upper()[:16], SCHEME, finding)


def result_sr(source: Dataset, pred, algorithm: Algorithm, labels, thresholds=None,
              keep_accession: bool = False, series_number: int = 990) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR of one film's Prediction (cxr.predict), referencing `source`.
    thresholds: (14,) calibrated thresholds at pred.operating_point (the readout's), or None
    without a readout (then only MC mean and std are reported)."""
    algo = algorithm.identification()
    src = [hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]
    groups = [_film_group(pred, algo, src)]
    has_readout = pred.calibrated is not None
    for i, finding in enumerate(labels):
        values = {"mean": pred.probs[i], "std": pred.std[i]}
        evaluations = []
        if has_readout:
            values["calibrated"] = pred.calibrated[i]
            if thresholds is not None and np.isfinite(thresholds[i]):
                values["threshold"] = thresholds[i]
            evaluations.append(hd.sr.QualitativeEvaluation(CALL, CALL_VALUES[pred.calls[i]]))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier=finding, uid=generate_uid()),
            finding_type=finding_code(finding), algorithm_id=algo, source_images=src,
            measurements=[_measurement(k, v, algo) for k, v in values.items()],
            qualitative_evaluations=evaluations))
    report = hd.sr.MeasurementReport(
        observation_context=_device_context(algorithm), procedure_reported=CHEST_XRAY,
        imaging_measurements=groups)  # the Image Library would need PatientOrientation
    comment = hd.sr.TextContentItem(COMMENT, _comment(pred), relationship_type="CONTAINS")
    content = report[0].ContentSequence  # the comment before the measurements: read first
    content.insert(next(i for i, item in enumerate(content) if item.ValueType == "CONTAINER"),
                   comment)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, series_description=_series(pred)[:64])
    _declare_scheme(sr)
    # an identifier: only on request (highdicom may or may not copy it; say which, here)
    # a new element: highdicom shares the source's element objects, and setting the value
    # of a shared one would change the source dataset too
    accession = str(source.get("AccessionNumber", "") or "") if keep_accession else ""
    sr[ACCESSION] = DataElement(ACCESSION, "SH", accession)
    return sr


def _film_group(pred, algo, src):
    evaluations, values = [], {"uncertainty": pred.score}
    if pred.ood_flag is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(OOD, YES_NO[bool(pred.ood_flag)]))
        values = {"ood_score": pred.ood_score, **values}
    evaluations.append(hd.sr.QualitativeEvaluation(RULE, code(pred.rule)))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="film", uid=generate_uid()),
        finding_type=WHOLE_FILM, algorithm_id=algo, source_images=src,
        qualitative_evaluations=evaluations,
        measurements=[_measurement(k, v, algo) for k, v in values.items()])


def _measurement(kind: str, value, algo) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=QUANTITIES[kind], value=float(value), unit=UNITLESS,
                             algorithm_id=algo)


def _device_context(algorithm: Algorithm) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[algorithm.checkpoint_sha256]), name="CXR Review",
        manufacturer_name=MANUFACTURER, model_name=algorithm.model[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _series(pred) -> str:
    """At most 64 characters (LO), the warning whole."""
    return f"{OOD_FIRST if pred.ood_flag else RESULT_SERIES} - {WARNING}"


def _comment(pred) -> str:
    text = (f"CXR Review model results: {WARNING}. Calls are made at the "
            f"{pred.operating_point} operating point." if pred.operating_point else
            f"CXR Review model results: {WARNING}. No calibration, calls or out-of-"
            "distribution guard: the checkpoint has no readout.")
    if pred.ood_flag:
        text = (f"{OOD_FIRST}: this film is unlike the films the model was trained on; its "
                "results are not reliable. " + text)
    return text


def _declare_scheme(ds: Dataset) -> None:
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "CXR Review private codes"
    item.CodingSchemeResponsibleOrganization = "CXR Review project"
    ds.CodingSchemeIdentificationSequence = [item]


# -- reading an SR back ---------------------------------------------------------------------
def read_result(ds: Dataset) -> dict:
    """What a result SR says: {"film": {...}, "findings": {finding: {quantity: value, "call"}},
    "algorithm": [name, version, parameters...], "comment": str, "source_sop": UID}."""
    out = {"film": {}, "findings": {}, "algorithm": [], "comment": "", "source_sop": None}
    for item in ds.ContentSequence:
        name = _concept(item)
        if item.ValueType == "TEXT" and name == COMMENT.value:
            out["comment"] = str(item.TextValue)
        if item.ValueType == "CONTAINER" and name == "126010":  # Imaging Measurements
            for group in item.ContentSequence:
                _read_group(group, out)
    return out


def _read_group(group, out: dict) -> None:
    values, target = {}, None
    for item in group.ContentSequence:
        name = _concept(item)
        if name == "121071":  # Finding
            meaning = item.ConceptCodeSequence[0].CodeMeaning
            target = "film" if meaning == WHOLE_FILM.meaning else meaning
        elif item.ValueType == "NUM":
            kind = next(k for k, c in QUANTITIES.items() if c.value == name)
            values[kind] = float(item.MeasuredValueSequence[0].NumericValue)
            if not out["algorithm"]:
                out["algorithm"] = _algorithm(item)
        elif item.ValueType == "CODE" and name == CALL.value:
            values["call"] = item.ConceptCodeSequence[0].CodeMeaning
        elif item.ValueType == "CODE" and name == OOD.value:
            values["ood"] = item.ConceptCodeSequence[0].CodeMeaning == "Yes"
        elif item.ValueType == "CODE" and name == RULE.value:
            values["rule"] = item.ConceptCodeSequence[0].CodeMeaning
        elif item.ValueType == "IMAGE" and out["source_sop"] is None:
            out["source_sop"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    if target == "film":
        out["film"] = values
    elif target is not None:
        out["findings"][target] = values


def _algorithm(num_item) -> list[str]:
    return [str(i.get("TextValue", "")) for i in num_item.get("ContentSequence", [])
            if i.ValueType == "TEXT"]


def _concept(item) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue) if "ConceptNameCodeSequence" in item \
        else ""


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")

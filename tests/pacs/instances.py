"""Instances for the PACS tests: tiny films with full UIDs and the planted patient identifiers
of tests/dicom_files.py, in one chest study and one CT study.

    study = chest_study()          # {"study_uid", "files": {kind: bytes}, "frontal": [sop, ...]}
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: dicom_files
import dicom_files as D

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
STUDY_DATE = "20250314"
SECRETS = D.SECRETS


def film(seed: int, size: int = 64, bits: int = 12) -> np.ndarray:
    """A smooth film with some texture: brighter in the middle, as a chest is."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 4) * 0.7 + 0.1
    arr = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1) * (2 ** bits - 1)
    return arr.astype(np.uint16 if bits > 8 else np.uint8)


def _instance(study_uid: str, pixels, syntax: str = "explicit", series_uid: str | None = None,
              **elements) -> tuple[str, bytes]:
    ds = D.dataset(pixels, **{"StudyInstanceUID": study_uid,
                              "SeriesInstanceUID": series_uid or generate_uid(),
                              "StudyDate": STUDY_DATE, "StudyTime": "101500",
                              "StudyID": "S1", "SeriesNumber": 1, "InstanceNumber": 1,
                              "PatientSex": "F", **elements})
    return ds.SOPInstanceUID, D.encode(ds, syntax) if pixels is not None else D.to_bytes(ds)


def chest_study(seed: int = 0) -> dict:
    """A study with a DX PA film in JPEG Lossless SV1, a CR AP film in MONOCHROME1, a lateral,
    a multi-frame DX, a text SR and a CT slice: two frontal chest films, four to explain."""
    study = generate_uid()
    files, kinds = {}, {}

    def add(kind, *args, **kw):
        sop, data = _instance(study, *args, **kw)
        files[kind], kinds[sop] = data, kind

    add("dx_pa_jpeg_lossless", film(seed), "jpeg-lossless-sv1", ViewPosition="PA",
        BodyPartExamined="CHEST")
    cr = film(seed + 1)
    add("cr_ap_monochrome1", (4095 - cr).astype(np.uint16), photometric="MONOCHROME1",
        sop_class=CR_STORAGE, Modality="CR", ViewPosition="AP", BodyPartExamined="CHEST")
    add("dx_lateral", film(seed + 2), ViewPosition="LL", BodyPartExamined="CHEST")
    add("dx_multiframe", np.stack([film(seed + 3), film(seed + 4)]), ViewPosition="PA",
        BodyPartExamined="CHEST")
    add("ct", film(seed + 5), sop_class=CT_STORAGE, Modality="CT", BodyPartExamined="CHEST")
    add("sr", None, sop_class=BASIC_TEXT_SR, Modality="SR")
    frontal = [s for s, k in kinds.items() if k in ("dx_pa_jpeg_lossless", "cr_ap_monochrome1")]
    return {"study_uid": study, "files": files, "kinds": kinds, "frontal": frontal}


def single_film_study(seed: int = 10, size: int = 64) -> dict:
    """One DX PA chest film (size x size, 12 bits), uncompressed: a study stored while `watch`
    runs (bench/bench_pacs_loop.py stores them at realistic sizes)."""
    study = generate_uid()
    sop, data = _instance(study, film(seed, size), ViewPosition="PA", BodyPartExamined="CHEST")
    return {"study_uid": study, "files": {"dx_pa": data}, "kinds": {sop: "dx_pa"},
            "frontal": [sop]}


def ct_study(seed: int = 20) -> dict:
    """A CT-only study: never searched for (no CR/DX in it)."""
    study = generate_uid()
    sop, data = _instance(study, film(seed), sop_class=CT_STORAGE, Modality="CT",
                          BodyPartExamined="CHEST")
    return {"study_uid": study, "files": {"ct": data}, "kinds": {sop: "ct"}, "frontal": []}


def read(data: bytes) -> pydicom.Dataset:
    import io
    return pydicom.dcmread(io.BytesIO(data))

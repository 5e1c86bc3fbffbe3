"""Read studies from a PACS, predict their frontal chest films, import them into the worklist and
send the results back: what `cxr pacs pull` and each round of `cxr pacs watch` do.

    >>> puller = Puller(pacs, Options(checkpoint="best.pt", db="data/worklist.sqlite"))
    >>> puller.enqueue(puller.find_studies(since="20250101"))     # work items, one per study
    >>> totals = puller.run_leased()                                # read them, once per checkpoint

A study is a work item of the worklist (cxr.worklist.work), keyed by its Study Instance UID and
the checkpoint's sha256, leased while it is read: a study is read once per checkpoint, also
after a restart, and several watchers never read one study twice. Within a study each instance
(QIDO-RS) ends in exactly one place, and the summary adds up:
  predicted        a frontal chest film, as cxr.data accepts it (cxr.predict.load_frontal),
                   predicted as `cxr predict` predicts (dropout seeded by the SOP Instance UID)
  not usable       listed in OUT/<study>/errors.csv with cxr.data's reason (a CT, a lateral,
                   an SR, a multi-frame...), or with the PACS's error for that instance
  already done     a case of this checkpoint already (results not yet in the PACS, after
                   --no-push or an outage, are sent by send_unsent)
  ours             an instance CXR Review wrote (its SRs and overlays): never read
Nothing of the patient or study modules is written by cxr outside the PACS: the worklist gets
the UIDs and the study date, the CSVs the SOP Instance UID.
"""
from __future__ import annotations

import io
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from cxr.data.images import ImageLoadError
from cxr.pacs.client import Pacs, PacsError, tag
from cxr.pacs.sr import MANUFACTURER, Algorithm, result_sr

RADIOGRAPHY = ("CR", "DX")  # ModalitiesInStudy searched for


@dataclass
class Options:
    checkpoint: Path
    db: str | Path
    out: Path = Path("predictions/pacs")
    push: bool = True
    secondary_capture: bool = False
    keep_accession: bool = False
    model_name: str | None = None
    passes: int | None = None
    seed: int = 0
    operating_point: str = "youden"
    device: str = "cpu"
    lease_seconds: int = 300
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class Totals:
    studies: int = 0
    instances: int = 0
    predicted: int = 0
    not_usable: int = 0
    already: int = 0
    ours: int = 0
    sent: int = 0

    def add(self, other: Totals) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def line(self) -> str:
        return (f"{self.studies} studies, {self.instances} instances: {self.predicted} "
                f"predicted, {self.not_usable} not usable (errors.csv), {self.already} already "
                f"done, {self.ours} CXR Review results (not read); {self.sent} results sent")


class Puller:
    def __init__(self, pacs: Pacs, options: Options, log=print):
        import cxr
        from cxr.checkpoint import load_model
        from cxr.hashing import file_sha256
        from cxr.readout import FORMAT, VERSION, load_readout
        from cxr.uncertainty import passes_for, rule_for
        from cxr.worklist import Worklist

        self.pacs, self.opts, self.log = pacs, options, log
        self.sha = file_sha256(options.checkpoint)
        self.model, meta = load_model(options.checkpoint, options.device)
        self.readout = load_readout(options.checkpoint, self.sha)
        self.passes = passes_for(meta, options.passes)
        self.rule, _ = rule_for(meta)
        self.model_name = options.model_name or meta["model"]["name"]
        self.algorithm = Algorithm(self.model_name, self.sha, cxr.__version__,
                                   f"{FORMAT} {VERSION}" if self.readout else "none")
        self.worklist = Worklist(options.db)
        self.held: list[str] = []  # leased by this worker, interrupted: read again first

    # -- which studies ------------------------------------------------------------------
    def find_studies(self, since: str | None = None, study_uids=()) -> list[str]:
        """Study Instance UIDs with CR or DX instances (QIDO-RS), from `since` (YYYYMMDD) on,
        or among `study_uids`."""
        found: dict[str, None] = {}
        for modality in RADIOGRAPHY:
            for uid in study_uids or [None]:
                for study in self.pacs.studies(modality=modality, since=since, study_uid=uid):
                    found[tag(study, "StudyInstanceUID")] = None
        missing = [u for u in study_uids if u not in found]
        for uid in missing:
            self.log(f"study {uid}: not found with CR or DX instances on {self.pacs.server}")
        return list(found)

    def enqueue(self, study_uids: list[str]) -> int:
        return self.worklist.enqueue_work(study_uids, self.sha)

    def run_leased(self, stop=lambda: False) -> Totals:
        """Lease this checkpoint's pending studies one at a time and read each; a PacsError the
        client's retries could not overcome (the server went away) leaves the study leased, to
        be read again by this worker's next round (`held`) or, if it dies, by any worker once
        the lease runs out."""
        totals = Totals()
        while not stop():
            if self.held and not self.worklist.renew_lease(
                    self.held[0], self.sha, self.opts.worker, self.opts.lease_seconds):
                # our lease ran out during the outage and another worker took the study over
                self.log(f"study {self.held[0]}: left to the worker that took it over")
                self.held = []
            keys = self.held or self.worklist.lease_work(self.sha, self.opts.worker, 1,
                                                         self.opts.lease_seconds)
            if not keys:
                return totals
            self.held = list(keys)
            study = keys[0]
            try:
                result = self.pull_study(study)
            except PacsError as exc:
                if exc.transient:
                    raise
                self.worklist.finish_work(study, self.sha, self.opts.worker, "failed", str(exc))
                self.log(f"study {study}: failed: {exc}")
                self.held = []
                continue
            if not self.worklist.finish_work(study, self.sha, self.opts.worker, "done",
                                             result.line()):
                self.log(f"study {study}: read, but its lease had passed to another worker")
            self.held = []
            self.log(f"study {study}: {result.line()}")
            totals.add(result)
        return totals

    # -- one study ----------------------------------------------------------------------
    def pull_study(self, study_uid: str) -> Totals:
        t = Totals(studies=1)
        listed = self.pacs.instances(study_uid)
        t.instances = len(listed)
        known = set(self._cases(study_uid=study_uid)["image"])
        errors, films = [], []  # films: (series, sop, dataset, LoadedImage)
        for row in listed:
            sop, series = tag(row, "SOPInstanceUID"), tag(row, "SeriesInstanceUID")
            if tag(row, "Manufacturer") == MANUFACTURER:
                t.ours += 1
                continue
            if sop in known:  # its results, if unsent, go with send_unsent()
                t.already += 1
                continue
            try:
                ds = self.pacs.instance(study_uid, series, sop)
                films.append((series, sop, ds, _load(ds, sop)))
            except PacsError as exc:
                if exc.transient:
                    raise
                errors.append((f"{study_uid}/{series}/{sop}", str(exc)))
            except ImageLoadError as exc:
                errors.append((f"{study_uid}/{series}/{sop}", str(exc)))
        preds = self._predict_and_import(study_uid, films, errors)
        t.predicted, t.not_usable = len(preds), len(errors)
        if self.opts.push and preds:
            cases = self._cases(sops=set(preds))
            ids = dict(zip(cases["image"], cases["id"]))
            for _, sop, ds, image in films:
                self._push(ds, image, preds[sop], int(ids[sop]))
                t.sent += 1
        return t

    def send_unsent(self, stop=lambda: False) -> int:
        """Send the results of this checkpoint's PACS cases that have none in the PACS yet
        (pulled with --no-push, or the PACS went away before they were stored): each film is
        retrieved and predicted again, to the same values (the same seed, its SOP Instance
        UID). Returns how many were sent."""
        if not self.opts.push:
            return 0
        cases = self._cases()
        cases = cases[cases["sop_uid"].notna() & cases["results_sent_at"].isna()]
        sent = 0
        for case in cases.itertuples():
            if stop():
                break
            try:
                ds = self.pacs.instance(case.study_uid, case.series_uid, case.sop_uid)
                image = _load(ds, case.sop_uid)
                self._push(ds, image, self._predict_one(case.sop_uid, image), int(case.id))
            except PacsError as exc:
                if exc.transient:
                    raise
                self.log(f"case {case.id}: results not sent: {exc}")  # the others still go
                continue
            except ImageLoadError as exc:  # replaced in the PACS by something else since
                self.log(f"case {case.id}: results not sent: {exc}")
                continue
            sent += 1
        if sent:
            self.log(f"{sent} results sent that had not been ({self.pacs.server})")
        return sent

    def _predict_and_import(self, study_uid: str, films, errors) -> dict:
        from cxr.atomic import write_json
        from cxr.evaluation.predictions import predictions_frame, write_csv
        from cxr.predict import predict_images, readout_columns

        out = self.opts.out / study_uid
        out.mkdir(parents=True, exist_ok=True)
        write_csv(pd.DataFrame(errors, columns=["file", "error"]), out / "errors.csv")
        if not films:
            return {}
        preds = predict_images(self.model, [f[3] for f in films], passes=self.passes,
                               seed=self.opts.seed, names=[f[1] for f in films], rule=self.rule,
                               readout=self.readout, operating_point=self.opts.operating_point)
        columns = readout_columns(preds) if self.readout is not None else None
        df = predictions_frame([p.name for p in preds], np.stack([p.probs for p in preds]),
                               np.stack([p.std for p in preds]),
                               np.array([p.uncertain for p in preds]),
                               np.array([p.score for p in preds]), self.rule, columns)
        write_csv(df, out / "predictions.csv")
        if self.readout is not None:
            write_json(out / "readout.json", self.readout.describe(self.opts.operating_point))
        refs = {sop: {"study_uid": study_uid, "series_uid": series, "sop_uid": sop,
                      "study_date": str(ds.get("StudyDate", "") or "") or None}
                for series, sop, ds, _ in films}
        self.worklist.import_predictions(out / "predictions.csv", self.model_name, self.sha,
                                         dicom_refs=refs)
        return {p.name: p for p in preds}

    def _cases(self, study_uid: str | None = None, sops=None) -> pd.DataFrame:
        cases = self.worklist.cases(checkpoint_hash=self.sha)
        if study_uid is not None:
            cases = cases[cases["study_uid"] == study_uid]
        if sops is not None:
            cases = cases[cases["image"].isin(list(sops))]
        return cases

    def _predict_one(self, sop: str, image):
        from cxr.predict import predict_images
        [pred] = predict_images(self.model, [image], passes=self.passes, seed=self.opts.seed,
                                names=[sop], rule=self.rule, readout=self.readout,
                                operating_point=self.opts.operating_point)
        return pred

    def _push(self, ds, image, pred, case_id: int) -> None:
        thresholds = (self.readout.thresholds(self.opts.operating_point)
                      if self.readout is not None else None)
        sr = result_sr(ds, pred, self.algorithm, self.model.labels, thresholds,
                       keep_accession=self.opts.keep_accession)
        results = [sr]
        if self.opts.secondary_capture:
            from cxr.pacs.overlay import secondary_capture
            results.append(secondary_capture(ds, image, self.model, pred,
                                             keep_accession=self.opts.keep_accession))
        self.pacs.store(results, str(ds.StudyInstanceUID))
        self.worklist.mark_results_sent(case_id, str(sr.SOPInstanceUID))


def _load(ds, sop: str):
    """A retrieved instance through cxr.data's rules, as `cxr predict` reads a file."""
    from cxr.predict import load_frontal

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)  # preamble + DICM: load_image
    return load_frontal(buffer.getvalue(), name=sop)

"""cxr.pacs.sr without a server: what the SR says first, without a readout, the accession number."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instances as I

from cxr.labels import FINDINGS
from cxr.pacs.sr import Algorithm, read_result, result_sr
from cxr.predict import Prediction

ALGO = Algorithm("fusion", "ab" * 32, "0.1.0", "cxr-readout 1")


def _pred(ood: bool | None, readout: bool = True) -> Prediction:
    rng = np.random.default_rng(1)
    p = Prediction("x", rng.random(14).astype(np.float32), rng.random(14).astype(np.float32) / 10,
                   np.zeros((0, 14)), False, score=0.05, rule="any")
    if readout:
        p.calibrated, p.calls, p.operating_point = rng.random(14), ["positive"] * 13 + ["n/a"], \
            "sensitivity"
        p.ood_score, p.ood_flag = 7.5, ood
    return p


@pytest.fixture(scope="module")
def source():
    return I.read(I.single_film_study()["files"]["dx_pa"])


@pytest.mark.parametrize("ood", [True, False])
def test_an_ood_film_says_so_first(source, ood):
    sr = result_sr(source, _pred(ood), ALGO, FINDINGS, np.full(14, 0.5))
    got = read_result(sr)
    assert sr.SeriesDescription.startswith("OUT OF DISTRIBUTION") == ood
    assert got["comment"].startswith("OUT OF DISTRIBUTION") == ood
    assert sr.SeriesDescription.endswith("research use only, not for diagnosis")
    assert got["film"] == {"ood_score": 7.5, "uncertainty": 0.05, "ood": ood, "rule": "any"}
    assert got["findings"]["Hernia"]["call"] == "n/a"
    assert got["findings"]["Atelectasis"]["threshold"] == 0.5
    assert "sensitivity operating point" in got["comment"]


def test_without_a_readout_it_reports_mc_mean_and_std_and_says_why(source):
    pred = _pred(None, readout=False)
    got = read_result(result_sr(source, pred, ALGO, FINDINGS, None))
    assert got["findings"]["Mass"] == pytest.approx(
        {"mean": float(pred.probs[FINDINGS.index("Mass")]),
         "std": float(pred.std[FINDINGS.index("Mass")])}, rel=1e-6)
    assert "ood" not in got["film"] and "no readout" in got["comment"]


def test_the_accession_number_only_with_keep_accession(source):
    assert result_sr(source, _pred(False), ALGO, FINDINGS).AccessionNumber == ""
    kept = result_sr(source, _pred(False), ALGO, FINDINGS, keep_accession=True)
    assert kept.AccessionNumber == I.D.PLANTED["AccessionNumber"]
    assert source.AccessionNumber == I.D.PLANTED["AccessionNumber"]  # the source is untouched

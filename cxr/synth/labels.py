"""Which findings each synthetic patient has, and which of them each of their films shows.

Prevalences follow NIH's ranking (Infiltration, Effusion, Atelectasis, ... Hernia) compressed
by a floor, so that even Hernia has positives in every split of a ~2,000-image demo, and about
half the films are `No Finding`, as in the real table (54%). Findings co-occur in the real
table's patterns: an abnormal patient's primary findings bring their usual companions with
real-like conditional probabilities (COMPANIONS); primaries are dealt by quota so small
datasets still hit the targets. A patient's findings persist over their follow-ups, each shown
on a film with probability KEEP, and a film sometimes shows one new finding (NEW).

    >>> rng = np.random.default_rng(0)
    >>> primaries = assign_primaries(rng, patients=700)      # one list per patient
    >>> patient = sample_patient_findings(rng, primaries[0])
    >>> film = sample_film_findings(rng, patient)
"""
from __future__ import annotations

import numpy as np

from cxr.labels import FINDINGS

# Image-level targets. NIH v2020 (percent of 112,120 images): Infiltration 17.7, Effusion 11.9,
# Atelectasis 10.3, Nodule 5.6, Mass 5.2, Pneumothorax 4.7, Consolidation 4.2,
# Pleural_Thickening 3.0, Cardiomegaly 2.5, Emphysema 2.2, Edema 2.1, Fibrosis 1.5,
# Pneumonia 1.3, Hernia 0.2: same order here, floored at 5% (a 2,000-image draw lands above 4%).
TARGET = {
    "Infiltration": 0.15, "Effusion": 0.12, "Atelectasis": 0.10, "Nodule": 0.075, "Mass": 0.07,
    "Pneumothorax": 0.066, "Consolidation": 0.062, "Pleural_Thickening": 0.059,
    "Cardiomegaly": 0.056, "Emphysema": 0.055, "Edema": 0.054, "Fibrosis": 0.053,
    "Pneumonia": 0.052, "Hernia": 0.05,
}
# P(companion | primary), rounded from the real table's pair counts.
COMPANIONS = {
    "Atelectasis": {"Effusion": 0.3, "Infiltration": 0.25, "Consolidation": 0.08,
                    "Pneumothorax": 0.04},
    "Cardiomegaly": {"Effusion": 0.3, "Edema": 0.08, "Infiltration": 0.1},
    "Effusion": {"Atelectasis": 0.25, "Infiltration": 0.2, "Cardiomegaly": 0.1, "Edema": 0.06,
                 "Consolidation": 0.07, "Pleural_Thickening": 0.05, "Mass": 0.04},
    "Infiltration": {"Effusion": 0.15, "Atelectasis": 0.13, "Nodule": 0.06, "Consolidation": 0.04},
    "Mass": {"Nodule": 0.2, "Effusion": 0.12, "Infiltration": 0.1, "Pleural_Thickening": 0.04},
    "Nodule": {"Mass": 0.12, "Infiltration": 0.15, "Pleural_Thickening": 0.04},
    "Pneumonia": {"Infiltration": 0.3, "Edema": 0.1, "Consolidation": 0.08, "Effusion": 0.08},
    "Pneumothorax": {"Emphysema": 0.12, "Effusion": 0.1, "Atelectasis": 0.08, "Infiltration": 0.08},
    "Consolidation": {"Infiltration": 0.15, "Atelectasis": 0.15, "Effusion": 0.12},
    "Edema": {"Infiltration": 0.3, "Effusion": 0.15, "Pneumonia": 0.08, "Cardiomegaly": 0.06},
    "Emphysema": {"Pneumothorax": 0.2, "Infiltration": 0.08},
    "Fibrosis": {"Infiltration": 0.15, "Pleural_Thickening": 0.08},
    "Pleural_Thickening": {"Effusion": 0.12, "Fibrosis": 0.05, "Nodule": 0.05},
    "Hernia": {"Effusion": 0.06, "Atelectasis": 0.06},
}
SECOND = 0.4  # chance that an abnormal patient has a second, independent primary finding
KEEP = 0.85   # chance that a patient's finding shows on a given film
NEW = 0.04    # chance that a film shows one finding the patient does not otherwise have


def _calibrate(iterations: int = 50) -> tuple[float, np.ndarray]:
    """P(abnormal patient) and primary-finding weights that give TARGET at image level:
    target = KEEP * (1 + SECOND) * (v + C^T v) + NEW * v / p, with v = p * w (first order:
    overlaps are ignored, which the generator's tests show costs about a point)."""
    target = np.array([TARGET[f] for f in FINDINGS])
    c = np.zeros((len(FINDINGS), len(FINDINGS)))
    for a, companions in COMPANIONS.items():
        for b, prob in companions.items():
            c[FINDINGS.index(a), FINDINGS.index(b)] = prob
    p = 0.5
    for _ in range(iterations):
        eye = np.eye(len(FINDINGS))
        v = np.linalg.solve(KEEP * (1 + SECOND) * (eye + c.T) + NEW / p * eye, target)
        v = np.clip(v, 1e-4, None)
        p = float(v.sum())
    return p, v / v.sum()


P_ABNORMAL, PRIMARY_WEIGHTS = _calibrate()


def assign_primaries(rng: np.random.Generator, patients: int) -> list[list[str]]:
    """Primary findings of each patient ([] = normal). Quotas, not independent draws: the
    number of abnormal patients and of primaries per finding are rounded expectations, so a
    700-patient demo gets its ~20 Hernia patients every time, not 10 on an unlucky seed."""
    abnormal = int(round(patients * P_ABNORMAL))
    total = int(round(abnormal * (1 + SECOND)))
    quota = _largest_remainder(PRIMARY_WEIGHTS * total)
    pool = [FINDINGS[i] for i in rng.permutation(np.repeat(np.arange(len(FINDINGS)), quota))]
    out: list[list[str]] = [[] for _ in range(patients)]
    who = [int(i) for i in rng.permutation(patients)[:abnormal]]
    for k, finding in enumerate(pool):  # one each, then second primaries for the first few
        out[who[k % abnormal]].append(finding)
    return out


def _largest_remainder(expected: np.ndarray) -> np.ndarray:
    counts = np.floor(expected).astype(int)
    order = np.argsort(-(expected - counts), kind="stable")
    counts[order[: int(round(expected.sum())) - counts.sum()]] += 1
    return counts


def sample_patient_findings(rng: np.random.Generator, primaries: list[str]) -> list[str]:
    """A patient's findings (NIH order): their primaries and, with real-like conditional
    probabilities, each primary's usual companions."""
    found = set(primaries)
    for primary in primaries:
        for companion, prob in COMPANIONS[primary].items():
            if rng.random() < prob:
                found.add(companion)
    return [f for f in FINDINGS if f in found]


def sample_film_findings(rng: np.random.Generator, patient: list[str]) -> list[str]:
    """What one of the patient's films shows: each finding kept with probability KEEP, and
    with probability NEW one finding the patient was not assigned (it comes and goes)."""
    shown = {f for f in patient if rng.random() < KEEP}
    if rng.random() < NEW:
        shown.add(FINDINGS[int(rng.choice(len(FINDINGS), p=PRIMARY_WEIGHTS))])
    return [f for f in FINDINGS if f in shown]


def sample_film_count(rng: np.random.Generator) -> int:
    """Films per patient: 1 + Poisson(1.9), at most 12 (mean ~2.9; 15% have a single film)."""
    return 1 + min(int(rng.poisson(1.9)), 11)

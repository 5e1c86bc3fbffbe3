"""Who the synthetic patients are and which films they have: demographics, labels per film,
and the official-style patient split. Cheap: no pixel is drawn here (cxr/synth/render.py does).

    >>> films = plan_films(patients=12, seed=1)   # one Film per Data_Entry row
    >>> test_patients = official_split(films, seed=1)

Every random draw comes from its own stream, `SeedSequence(seed, spawn_key=(stream, patient,
...))`, never global state, so a film's labels and pixels do not depend on the order or the
number of worker processes that make them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from cxr.labels import FINDINGS
from cxr.synth.labels import (assign_primaries, sample_film_count, sample_film_findings,
                              sample_patient_findings)

TEST_FRACTION = 0.2
LABEL_STREAM, ANATOMY_STREAM, LESION_STREAM, FILM_STREAM, DATASET_STREAM = range(5)


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one stream, e.g. stream_rng(seed, FILM_STREAM, patient, follow_up)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class Film:
    """One row of Data_Entry_2017.csv."""
    patient: int
    follow_up: int
    age: int
    sex: str
    view: str
    findings: tuple[str, ...]

    @property
    def image(self) -> str:
        return f"{self.patient:08d}_{self.follow_up:03d}.png"


def plan_films(patients: int, seed: int) -> list[Film]:
    """Demographics and labels of every film, patient by patient (cheap; done before rendering).
    Every finding appears at least once when there are films enough (tiny test datasets)."""
    primaries = assign_primaries(stream_rng(seed, DATASET_STREAM, 2), patients)
    plans = [_plan_patient(pid, seed, primaries[pid - 1]) for pid in range(1, patients + 1)]
    _ensure_every_finding(plans, seed)
    films = []
    for pid, (sex, ages, views, labels) in enumerate(plans, start=1):
        films += [Film(pid, j, ages[j], sex, views[j], tuple(f for f in FINDINGS if f in labels[j]))
                  for j in range(len(ages))]
    return films


def _plan_patient(pid: int, seed: int, primaries: list[str]):
    rng = stream_rng(seed, LABEL_STREAM, pid)
    sex = "M" if rng.random() < 0.56 else "F"
    count = sample_film_count(rng)
    age0 = int(np.clip(rng.normal(47, 17), 2, 92))
    years = np.cumsum(rng.exponential(0.4, count)) - 0.4 * rng.random()  # follow-ups months apart
    ages = [age0 + max(0, int(y)) for y in years]
    ap = rng.beta(1.2, 1.8)  # inpatients are mostly filmed AP at the bedside
    views = ["AP" if rng.random() < ap else "PA" for _ in range(count)]
    patient = sample_patient_findings(rng, primaries)
    labels = [set(sample_film_findings(rng, patient)) for _ in range(count)]
    return sex, ages, views, labels


def _ensure_every_finding(plans, seed: int) -> None:
    rng = stream_rng(seed, DATASET_STREAM, 0)
    for finding in FINDINGS:
        if not any(finding in labels for *_, film_labels in plans for labels in film_labels):
            _, _, _, film_labels = plans[int(rng.integers(len(plans)))]
            film_labels[int(rng.integers(len(film_labels)))].add(finding)


def official_split(films: list[Film], seed: int) -> set[int]:
    """Test patients of an official-style split: whole patients, ~TEST_FRACTION of the films,
    random like NIH's, then nudged so every finding present twice has a patient on each side."""
    by_patient: dict[int, set[str]] = {}
    for film in films:
        by_patient.setdefault(film.patient, set()).update(film.findings)
    counts = Counter(film.patient for film in films)
    order = [int(p) for p in stream_rng(seed, DATASET_STREAM, 1).permutation(sorted(by_patient))]
    test, n = set(), 0
    for pid in order:
        if n >= TEST_FRACTION * len(films):
            break
        test.add(pid)
        n += counts[pid]
    for finding in FINDINGS:
        having = [p for p in order if finding in by_patient[p]]
        if len(having) >= 2 and all(p in test for p in having):
            test.discard(having[-1])
        elif len(having) >= 2 and not any(p in test for p in having):
            test.add(having[-1])
    return test

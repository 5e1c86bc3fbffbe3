"""cxr/synth/plan.py: patients have follow-ups that keep their findings, and prevalences follow
NIH's ranking with a floor."""
from __future__ import annotations

import numpy as np

from cxr.labels import FINDINGS
from cxr.synth.plan import Film, plan_films


def test_most_patients_have_several_films_and_keep_their_findings():
    films = plan_films(400, seed=0)
    by_patient: dict[int, list[Film]] = {}
    for film in films:
        by_patient.setdefault(film.patient, []).append(film)
    assert np.mean([len(f) > 1 for f in by_patient.values()]) > 0.7
    # A finding on a patient's first film is usually still there on the next one.
    kept = [bool(set(f[0].findings) & set(f[1].findings)) for f in by_patient.values()
            if len(f) > 1 and f[0].findings]
    assert len(kept) > 50 and np.mean(kept) > 0.6


def test_prevalences_follow_nih_ranking_with_a_floor():
    films = plan_films(3000, seed=0)
    labels = np.array([[f in film.findings for f in FINDINGS] for film in films])
    share = dict(zip(FINDINGS, labels.mean(axis=0)))
    assert 0.38 < np.mean(~labels.any(axis=1)) < 0.55  # No Finding
    assert min(share.values()) > 0.035
    top = sorted(share, key=share.get, reverse=True)[:3]
    assert top == ["Infiltration", "Effusion", "Atelectasis"]
    assert share["Hernia"] < share["Nodule"] < share["Atelectasis"]
    # Real co-occurrence patterns: Effusion goes with Atelectasis far more than chance.
    eff, atel = labels[:, FINDINGS.index("Effusion")], labels[:, FINDINGS.index("Atelectasis")]
    assert (eff & atel).mean() > 2 * eff.mean() * atel.mean()

"""One synthetic film: its case (anatomy, pose, exposure, lesions, noise), its pixels and the
box of every lesion.

    >>> case = make_case(film, seed=1)                  # film: a cxr.synth.plan.Film
    >>> pixels, boxes = render_with_boxes(case, size=256)   # uint8, [(finding, x, y, w, h)]
    >>> render_film(case, 256, without={"Mass"})      # the same film with a finding left out

A lesion's box is the exact bounds of the pixels it changes: the support of what it draws and,
for findings that reshape the anatomy (Cardiomegaly, Emphysema, Fibrosis, Atelectasis), every
pixel that differs from the same film rendered without it. `render_film(..., without=...)` is
how the tests check this.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr.labels import FINDINGS
from cxr.synth.anatomy import (Anatomy, Exposure, Fields, Grid, Pose, base_layers, compose,
                               expose, film_anatomy, film_noise, sample_anatomy, sample_exposure,
                               sample_pose)
from cxr.synth.findings import Lesion, draw, is_structural, reshape, sample_lesions
from cxr.synth.plan import ANATOMY_STREAM, FILM_STREAM, LESION_STREAM, Film, stream_rng


@dataclass(frozen=True)
class Case:
    """Everything a film's pixels depend on."""
    anatomy: Anatomy
    pose: Pose
    exposure: Exposure
    lesions: tuple[Lesion, ...]
    noise_seed: int


def make_case(film: Film, seed: int) -> Case:
    """The patient's anatomy and lesions (the same on every follow-up) on this film's pose,
    exposure and noise; each lesion a little different from film to film."""
    patient_anatomy = sample_anatomy(stream_rng(seed, ANATOMY_STREAM, film.patient), film.sex)
    rng = stream_rng(seed, FILM_STREAM, film.patient, film.follow_up)
    pose, exposure = sample_pose(rng), sample_exposure(rng)
    lesions = []
    for finding in film.findings:
        lesion_rng = stream_rng(seed, LESION_STREAM, film.patient, FINDINGS.index(finding))
        lesions += [lesion.varied(rng)
                    for lesion in sample_lesions(finding, lesion_rng, patient_anatomy)]
    return Case(film_anatomy(patient_anatomy, pose, film.view), pose, exposure, tuple(lesions),
                int(rng.integers(2**31)))


def _layers(case: Case, grid: Grid, lesions, fixed=None):
    anatomy = reshape(case.anatomy, lesions)
    base = base_layers(anatomy, grid, fixed)
    return anatomy, base, [draw(lesion, anatomy, grid, base) for lesion in lesions]


def _combine(shape, drawn: list[dict]) -> Fields:
    f = Fields.zeros(shape)
    clear = np.ones(shape, np.float32)
    for fields in drawn:  # each lesion draws some of the four; what it leaves out adds nothing
        clear *= 1.0 - fields.get("opacity", 0.0)
        f.lucency += fields.get("lucency", 0.0)
        f.no_markings = np.maximum(f.no_markings, fields.get("no_markings", 0.0))
        f.density += fields.get("density", 0.0)
    f.opacity = 1.0 - clear
    return f


def _density(case: Case, grid: Grid, lesions, fixed=None) -> np.ndarray:
    anatomy, base, drawn = _layers(case, grid, lesions, fixed)
    return compose(anatomy, base, _combine(grid.x.shape, drawn))


def _expose(case: Case, grid: Grid, density: np.ndarray) -> np.ndarray:
    noise = film_noise(np.random.default_rng(case.noise_seed), grid, case.exposure)
    return expose(density, case.exposure, noise)


def render_film(case: Case, size: int, without: tuple[str, ...] | set[str] = ()) -> np.ndarray:
    """uint8 size x size film; `without` leaves those findings out (same noise, same anatomy)."""
    grid = Grid.make(size, case.pose)
    kept = [lesion for lesion in case.lesions if lesion.finding not in without]
    return _expose(case, grid, _density(case, grid, kept))


def render_with_boxes(case: Case,
                      size: int) -> tuple[np.ndarray, list[tuple[str, int, int, int, int]]]:
    """The film and one (finding, x, y, w, h) box per lesion: the bounds of every pixel the
    lesion can change (its drawn support, plus what moves when it reshapes the anatomy)."""
    grid = Grid.make(size, case.pose)
    anatomy, base, drawn = _layers(case, grid, case.lesions)
    density = compose(anatomy, base, _combine(grid.x.shape, drawn))
    boxes = []
    for i, (lesion, fields) in enumerate(zip(case.lesions, drawn)):
        touched = np.zeros(grid.x.shape, bool)
        for array in fields.values():
            touched |= array != 0
        if is_structural(lesion):
            others = case.lesions[:i] + case.lesions[i + 1:]
            touched |= _density(case, grid, others, base.fixed) != density
        box = _bounds(touched)
        if box is not None:
            boxes.append((lesion.finding, *box))
    return _expose(case, grid, density), boxes


def _bounds(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)

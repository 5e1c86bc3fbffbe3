"""The synthetic sign of each of the 14 findings: where it sits, how big and dense it is
(`sample_*`, once per patient, so follow-ups show the same lesion) and what it does to a film
(`draw_*`: opacity filling lung air, extra lucency, lost markings, added density; see
`anatomy.Fields`). Four findings also change the anatomy itself (`reshape`): an enlarged
heart, flat low diaphragms, a raised hemidiaphragm, small fibrotic lungs.

Some signs are deliberately alike so the task is not trivial: Consolidation (dense, one sharp
fissural border, air bronchograms), Pneumonia (patchy, ill-defined, moderately dense) and
Infiltration (faint, diffuse, patchy) overlap in density and extent; Nodule and Mass differ
only in size; a Hernia's gas resembles the gastric bubble below the diaphragm.

Every draw has compact support (smoothstep edges), so a lesion's box can be the exact bounds of
the pixels it changes. Positions are lung-relative (`Anatomy.lung_point`) and follow the
anatomy of each film.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from cxr.synth.anatomy import (EDGE, SIDES, Anatomy, BaseLayers, Grid, bump, diaphragm_y,
                               line_noise, lung_inside, segment_distance, smoothstep, value_noise)
from cxr.labels import FINDINGS


@dataclass(frozen=True)
class Lesion:
    """One drawn instance of a finding (a patient may have two nodules: two lesions)."""
    finding: str
    params: dict

    def varied(self, rng: np.random.Generator) -> "Lesion":
        """The same lesion on another film: a little bigger or smaller, denser or fainter."""
        p = dict(self.params)
        if "size" in p:
            p["size"] *= float(np.exp(rng.normal(0, 0.06)))
        p["amount"] = float(min(1.0, p["amount"] * np.exp(rng.normal(0, 0.08))))
        return Lesion(self.finding, p)


@dataclass(frozen=True)
class Sign:
    sample: Callable[[np.random.Generator, Anatomy], list[dict]]
    draw: Callable[[dict, Anatomy, Grid, BaseLayers], dict]
    reshape: Callable[[dict, Anatomy], Anatomy] | None = None


def _side(rng) -> int:
    return int(rng.choice(SIDES))


def _lung_spot(rng, a: Anatomy, side: int, u=(0.15, 0.85), v=(0.15, 0.85), margin=0.02) -> dict:
    """A lung-relative position well inside the lung field (rejection sampling)."""
    for _ in range(100):
        uu, vv = rng.uniform(*u), rng.uniform(*v)
        x, y = a.lung_point(side, uu, vv)
        if lung_inside(a, side, np.float32(x), np.float32(y)) > margin:
            break
    return {"side": side, "u": float(uu), "v": float(vv)}


def _centre(p: dict, a: Anatomy) -> tuple[float, float]:
    return a.lung_point(p["side"], p["u"], p["v"])


def _seed(rng) -> int:
    return int(rng.integers(2**31))


def _patches(p: dict, grid: Grid, cell: float, lo: float, hi: float) -> np.ndarray:
    n = value_noise(np.random.default_rng(p["seed"]), grid.size, cell)
    return smoothstep(lo, hi, n)


def _bronchograms(p: dict, a: Anatomy, grid: Grid) -> np.ndarray:
    """Dark branching tubes (air-filled bronchi) running from the hilum through an opacity."""
    hx, hy = a.hilum(p["side"])
    dx, dy = p["side"] * (grid.x - hx), grid.y - hy
    r = np.hypot(dx, dy) + 1e-4
    n = line_noise(np.random.default_rng(p["seed"] + 1), (dy / r + 1.0) * 0.5, 8)
    return smoothstep(0.05, 0.0, np.abs(n - 0.5)) * smoothstep(0.03, 0.08, r)


# ---- Nodule and Mass: round opacities, small and large -------------------------------------

def sample_nodule(rng, a):
    count = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    return [{**_lung_spot(rng, a, _side(rng)), "size": rng.uniform(0.025, 0.04),
             "amount": rng.uniform(0.85, 1.0)} for _ in range(count)]


def draw_round(p, a, grid, base):
    cx, cy = _centre(p, a)
    dx, dy = grid.x - cx, grid.y - cy
    d = np.hypot(dx, dy)
    if p.get("lobes", 0):  # lobulated outline
        theta = np.arctan2(dy, dx)
        d = d / (1.0 + p["lobes"] * np.sin(5 * theta + p["phase"])
                 + 0.5 * p["lobes"] * np.sin(3 * theta))
    blob = smoothstep(p["size"], 0.7 * p["size"], d)
    return {"opacity": p["amount"] * blob * base.lungs[p["side"]],
            "density": 0.18 * p["amount"] * blob}


def sample_mass(rng, a):
    count = 1 if rng.random() < 0.9 else 2
    return [{**_lung_spot(rng, a, _side(rng), v=(0.15, 0.75), margin=0.04),
             "size": rng.uniform(0.06, 0.1), "amount": rng.uniform(0.85, 1.0),
             "lobes": rng.uniform(0.04, 0.15), "phase": rng.uniform(0, 2 * math.pi)}
            for _ in range(count)]


# ---- Pneumothorax: apical/lateral lucency, pleural line, no markings -----------------------

def sample_pneumothorax(rng, a):
    return [{"side": _side(rng), "collapse": rng.uniform(0.12, 0.3),
             "amount": rng.uniform(0.75, 1.0)}]


def draw_pneumothorax(p, a, grid, base):
    side, c = p["side"], min(0.35, p["collapse"] * p["amount"] / 0.8)
    hx, hy = a.hilum(side)
    t, th = side * (grid.x - a.midline), side * (hx - a.midline)
    # The lung shrinks towards the hilum, upwards and outwards only (air rises in an upright
    # patient).
    t2 = np.where(t > th, th + (t - th) / (1 - c), t)
    y2 = np.where(grid.y < hy, hy + (grid.y - hy) / (1 - c), grid.y)
    inside = lung_inside(a, side, a.midline + side * t2, y2)
    space = base.lungs[side] * smoothstep(EDGE, 0.0, inside)
    line = bump(inside, 0.006, 0.003) * base.lungs[side]
    collapsed = base.lungs[side] * smoothstep(0.0, EDGE, inside)
    return {"lucency": 0.8 * space, "no_markings": space, "density": 0.12 * line,
            "opacity": 0.25 * p["amount"] * collapsed * smoothstep(0.05, 0.0, inside)}


# ---- Effusion: basal opacity with a meniscus, blunted costophrenic angle -------------------

def sample_effusion(rng, a):
    sides = [_side(rng)] if rng.random() < 0.8 else list(SIDES)
    return [{"side": s, "size": rng.uniform(0.08, 0.26), "amount": rng.uniform(0.85, 1.0)}
            for s in sides]


def draw_effusion(p, a, grid, base):
    side = p["side"]
    t = side * (grid.x - a.midline)
    q = np.clip((t - a.mediastinum) / (a.half_width - a.mediastinum), 0.0, 1.0)
    level = a.base(side) - p["size"] - 0.09 * q ** 3  # the meniscus climbs the lateral wall
    fluid = smoothstep(level - 0.025, level + 0.01, grid.y) * base.lungs[side]
    return {"opacity": p["amount"] * fluid, "density": 0.09 * p["amount"] * fluid}


# ---- Cardiomegaly: enlarged heart shadow ----------------------------------------------------

def sample_cardiomegaly(rng, a):
    return [{"size": rng.uniform(1.4, 1.75), "amount": 1.0, "height": rng.uniform(1.05, 1.2)}]


def reshape_cardiomegaly(p, a):
    return replace(a, heart_width=a.heart_width * p["size"],
                   heart_height=a.heart_height * p["height"])


def draw_nothing(p, a, grid, base):
    return {}


# ---- Emphysema: hyperlucent, hyperexpanded lungs, flat low diaphragm, bullae -----------------

def sample_emphysema(rng, a):
    bullae = [(_lung_spot(rng, a, _side(rng), v=(0.1, 0.45)), rng.uniform(0.03, 0.06))
              for _ in range(int(rng.integers(1, 4)))]
    return [{"amount": rng.uniform(0.35, 0.6), "flatten": rng.uniform(0.65, 0.9),
             "drop": rng.uniform(0.03, 0.06), "bullae": bullae}]


def reshape_emphysema(p, a):
    return replace(a, dome=a.dome * (1 - p["flatten"]), base_right=a.base_right + p["drop"],
                   base_left=a.base_left + p["drop"], lucency=a.lucency + p["amount"])


def draw_emphysema(p, a, grid, base):
    lucency, no_markings = np.zeros_like(grid.x), 0.5 * base.lung
    for spot, radius in p["bullae"]:
        cx, cy = _centre(spot, a)
        b = smoothstep(radius, 0.8 * radius, np.hypot(grid.x - cx, grid.y - cy)) * base.lung
        lucency, no_markings = lucency + 0.5 * b, np.maximum(no_markings, b)
    return {"lucency": lucency, "no_markings": no_markings}


# ---- Fibrosis: basal, peripheral reticular lines, small lungs ----------------------------

def sample_fibrosis(rng, a):
    return [{"amount": rng.uniform(0.9, 1.0), "seed": _seed(rng), "shrink": rng.uniform(0.01, 0.03),
             "extent": rng.uniform(0.4, 0.65)}]


def reshape_fibrosis(p, a):
    return replace(a, base_right=a.base_right - p["shrink"], base_left=a.base_left - p["shrink"])


def draw_fibrosis(p, a, grid, base):
    rng = np.random.default_rng(p["seed"])
    net = np.maximum(*(smoothstep(0.12, 0.0, np.abs(value_noise(rng, grid.size, 0.05) - 0.5))
                       for _ in range(2)))
    peripheral = np.abs(grid.x - a.midline) / a.half_width
    zone = smoothstep(1 - p["extent"], 1.0 - 0.5 * p["extent"], base.fixed.zone) \
        * smoothstep(0.35, 0.7, peripheral)
    return {"opacity": p["amount"] * net * zone * base.lung,
            "density": 0.1 * p["amount"] * net * zone * base.lung}


# ---- Edema: bilateral perihilar haze (bat wing) ---------------------------------------------

def sample_edema(rng, a):
    return [{"size": rng.uniform(0.2, 0.3), "amount": rng.uniform(0.55, 0.8)}]


def draw_edema(p, a, grid, base):
    haze = np.zeros_like(grid.x)
    for side in SIDES:
        hx, hy = a.hilum(side)
        r = np.hypot(grid.x - hx, 1.3 * (grid.y - hy))
        haze = np.maximum(haze, smoothstep(p["size"], 0.25 * p["size"], r) * base.lungs[side])
    return {"opacity": p["amount"] * haze, "density": 0.03 * p["amount"] * haze}


# ---- Consolidation / Pneumonia / Infiltration: the three look-alike airspace opacities ------

def sample_consolidation(rng, a):
    side = _side(rng)
    upper = rng.random() < 0.4
    spot = _lung_spot(rng, a, side, v=(0.15, 0.35) if upper else (0.5, 0.85), u=(0.25, 0.75))
    return [{**spot, "upper": bool(upper), "fissure": rng.uniform(0.38, 0.48),
             "tilt": rng.normal(0, 0.08), "size": rng.uniform(0.11, 0.18),
             "amount": rng.uniform(0.75, 1.0), "seed": _seed(rng),
             "bronchograms": bool(rng.random() < 0.85)}]


def draw_consolidation(p, a, grid, base):
    """Lobar: dense and homogeneous, one sharp border along the fissure, air bronchograms."""
    side = p["side"]
    cx, cy = _centre(p, a)
    fx, fy = a.lung_point(side, 0.5, p["fissure"])
    fissure = grid.y - (fy + p["tilt"] * side * (grid.x - fx))
    lobe = smoothstep(0.0, -0.004, fissure) if p["upper"] else smoothstep(0.0, 0.004, fissure)
    extent = smoothstep(p["size"], 0.55 * p["size"], np.hypot(grid.x - cx, grid.y - cy))
    fill = lobe * extent * base.lungs[side]
    if p["bronchograms"]:
        fill = fill * (1.0 - 0.7 * _bronchograms(p, a, grid))
    return {"opacity": p["amount"] * fill, "density": 0.06 * p["amount"] * fill}


def sample_pneumonia(rng, a):
    spot = _lung_spot(rng, a, _side(rng), v=(0.3, 0.9))
    return [{**spot, "size": rng.uniform(0.1, 0.16), "amount": rng.uniform(0.65, 0.95),
             "seed": _seed(rng), "bronchograms": bool(rng.random() < 0.25)}]


def draw_pneumonia(p, a, grid, base):
    """Patchy, ill-defined (no sharp border), moderately dense."""
    cx, cy = _centre(p, a)
    blob = smoothstep(p["size"], 0.3 * p["size"], np.hypot(grid.x - cx, grid.y - cy))
    fill = blob * _patches(p, grid, 0.035, 0.3, 0.65) * base.lungs[p["side"]]
    if p["bronchograms"]:
        fill = fill * (1.0 - 0.5 * _bronchograms(p, a, grid))
    return {"opacity": p["amount"] * fill, "density": 0.04 * p["amount"] * fill}


def sample_infiltration(rng, a):
    count = 1 if rng.random() < 0.5 else 2
    return [{**_lung_spot(rng, a, _side(rng), v=(0.2, 0.85)), "size": rng.uniform(0.12, 0.2),
             "amount": rng.uniform(0.4, 0.65), "seed": _seed(rng)} for _ in range(count)]


def draw_infiltration(p, a, grid, base):
    """Faint, diffuse, patchy; wider than pneumonia, with finer patches."""
    cx, cy = _centre(p, a)
    blob = smoothstep(p["size"], 0.3 * p["size"], np.hypot(grid.x - cx, grid.y - cy))
    fill = blob * _patches(p, grid, 0.025, 0.3, 0.7) * base.lungs[p["side"]]
    return {"opacity": p["amount"] * fill, "density": 0.03 * p["amount"] * fill}


# ---- Atelectasis: plate-like band plus volume loss (raised hemidiaphragm) -------------------

def sample_atelectasis(rng, a):
    side = _side(rng)
    bands = [{**_lung_spot(rng, a, side, u=(0.5, 0.9), v=(0.45, 0.72)),
              "length": rng.uniform(0.1, 0.2), "thickness": rng.uniform(0.012, 0.024),
              "angle": rng.normal(0, 0.2)}
             for _ in range(1 if rng.random() < 0.75 else 2)]
    return [{"side": side, "bands": bands, "raise": rng.uniform(0.03, 0.06),
             "amount": rng.uniform(0.85, 1.0)}]


def reshape_atelectasis(p, a):
    if p["side"] < 0:
        return replace(a, base_right=a.base_right - p["raise"])
    return replace(a, base_left=a.base_left - p["raise"])


def draw_atelectasis(p, a, grid, base):
    plate = np.zeros_like(grid.x)
    for b in p["bands"]:
        cx, cy = _centre(b, a)
        dx, dy = 0.5 * b["length"] * math.cos(b["angle"]), 0.5 * b["length"] * math.sin(b["angle"])
        d = segment_distance(grid.x, grid.y, (cx - dx, cy - dy), (cx + dx, cy + dy))
        plate = np.maximum(plate, smoothstep(b["thickness"], 0.4 * b["thickness"], d))
    return {"opacity": p["amount"] * plate * base.lungs[p["side"]], "density": 0.06 * plate}


# ---- Pleural thickening: smooth pleural-based band along the chest wall or apex ----------

def sample_pleural_thickening(rng, a):
    apical = rng.random() < 0.3
    return [{"side": _side(rng), "apical": bool(apical), "size": rng.uniform(0.045, 0.07),
             "from": rng.uniform(0.2, 0.45), "length": rng.uniform(0.25, 0.45),
             "amount": rng.uniform(0.85, 1.0), "seed": _seed(rng)}]


def draw_pleural_thickening(p, a, grid, base):
    side = p["side"]
    inside = lung_inside(a, side, grid.x, grid.y)
    # Plaque-like: the inner margin undulates (thickness 0.5-1.3x along the wall), so the band
    # reads as pleural disease, not as a narrower but normal lung.
    lumps = 0.5 + 0.8 * line_noise(np.random.default_rng(p["seed"]), np.clip(grid.y, 0, 1), 12)
    band = smoothstep(p["size"] * lumps, 0.6 * p["size"] * lumps, inside) * base.lungs[side]
    if p["apical"]:
        hx, hy = a.hilum(side)
        band = band * smoothstep(hy - 0.12, hy - 0.2, grid.y)
    else:
        y0 = a.apex + p["from"] * (a.base(side) - a.apex)
        y1 = y0 + p["length"]
        band = band * smoothstep(y0, y0 + 0.03, grid.y) * smoothstep(y1, y1 - 0.03, grid.y)
        band = band * (side * (grid.x - a.midline)
                       > a.mediastinum + 0.5 * (a.half_width - a.mediastinum))
    return {"opacity": p["amount"] * band, "density": 0.12 * p["amount"] * band}


# ---- Hernia: retrocardiac gas-containing mass with an air-fluid level ----------------------

def sample_hernia(rng, a):
    return [{"offset": rng.uniform(-0.01, 0.06), "size": rng.uniform(0.055, 0.085),
             "level": rng.uniform(-0.2, 0.3), "rise": rng.uniform(0.6, 0.95),
             "amount": rng.uniform(0.7, 1.0)}]


def draw_hernia(p, a, grid, base):
    r = p["size"]
    cx = a.midline + p["offset"]
    cy = min(diaphragm_y(a, -1, cx), diaphragm_y(a, 1, cx)) - p["rise"] * r
    d = np.hypot(grid.x - cx, grid.y - cy)
    sac = smoothstep(r - 0.008, r - 0.014, d)  # contents, inside a thick bright wall (ring shadow)
    air = sac * smoothstep(cy + p["level"] * r, cy + p["level"] * r - 0.003, grid.y)
    wall = bump(d - r + 0.008, 0.008, 0.004)
    return {"density": p["amount"] * (-0.45 * air + 0.08 * (sac - air) + 0.2 * wall)}


SIGNS: dict[str, Sign] = {
    "Atelectasis": Sign(sample_atelectasis, draw_atelectasis, reshape_atelectasis),
    "Cardiomegaly": Sign(sample_cardiomegaly, draw_nothing, reshape_cardiomegaly),
    "Effusion": Sign(sample_effusion, draw_effusion),
    "Infiltration": Sign(sample_infiltration, draw_infiltration),
    "Mass": Sign(sample_mass, draw_round),
    "Nodule": Sign(sample_nodule, draw_round),
    "Pneumonia": Sign(sample_pneumonia, draw_pneumonia),
    "Pneumothorax": Sign(sample_pneumothorax, draw_pneumothorax),
    "Consolidation": Sign(sample_consolidation, draw_consolidation),
    "Edema": Sign(sample_edema, draw_edema),
    "Emphysema": Sign(sample_emphysema, draw_emphysema, reshape_emphysema),
    "Fibrosis": Sign(sample_fibrosis, draw_fibrosis, reshape_fibrosis),
    "Pleural_Thickening": Sign(sample_pleural_thickening, draw_pleural_thickening),
    "Hernia": Sign(sample_hernia, draw_hernia),
}
assert tuple(SIGNS) == FINDINGS


def sample_lesions(finding: str, rng: np.random.Generator, anatomy: Anatomy) -> list[Lesion]:
    return [Lesion(finding, p) for p in SIGNS[finding].sample(rng, anatomy)]


def reshape(anatomy: Anatomy, lesions: list[Lesion]) -> Anatomy:
    for lesion in lesions:
        fn = SIGNS[lesion.finding].reshape
        if fn is not None:
            anatomy = fn(lesion.params, anatomy)
    return anatomy


def is_structural(lesion: Lesion) -> bool:
    """Does the lesion change the anatomy (so removing it can change pixels far from its fields)?"""
    return SIGNS[lesion.finding].reshape is not None


def draw(lesion: Lesion, anatomy: Anatomy, grid: Grid, base: BaseLayers) -> dict:
    return SIGNS[lesion.finding].draw(lesion.params, anatomy, grid, base)

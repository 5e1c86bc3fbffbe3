"""Procedural chest phantom: a patient's anatomy, one film's pose and exposure, and the
normal-anatomy layers a synthetic PA/AP chest radiograph is composed from.

Shapes are drawn on normalised patient coordinates (x to the image's right, y down, both in
[0, 1]), so the same patient looks the same at 64 or 1024 px; fine textures (value noise) live
on the film's pixel grid. The image's left is the patient's right,
as on a PA film. `side` is -1 for the image-left lung (patient's right) and +1 for the other.

Shapes are implicit functions ("inside" > 0) with smoothstep edges, which have compact support:
a lesion's effect is exactly zero outside its region, which is what lets `render.py` draw boxes
that provably contain every changed pixel. Vectorised numpy throughout, float32.

    >>> rng = np.random.default_rng(0)
    >>> anatomy = sample_anatomy(rng, sex="F")
    >>> grid = Grid.make(256, Pose())
    >>> base = base_layers(anatomy, grid)          # lungs, heart, bones, ... as HxW arrays
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

SIDES = (-1, 1)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1, cubic in between (e0 > e1 gives the falling version)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bump(x: np.ndarray, half_width: float, edge: float) -> np.ndarray:
    """1 where |x| < half_width - edge, 0 beyond half_width, smooth in between."""
    return smoothstep(half_width, half_width - edge, np.abs(x))


def segment_distance(x, y, p0, p1) -> np.ndarray:
    """Distance from each (x, y) to the segment p0-p1."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * dx + (y - p0[1]) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - (p0[0] + t * dx), y - (p0[1] + t * dy))


def value_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth random field, about [0, 1], with features about `cell` wide (normalised units),
    on the film's pixel grid: a small random lattice resized bicubically (PIL, fast)."""
    n = int(math.ceil(1.0 / cell)) + 1
    lattice = Image.fromarray(rng.random((n, n), dtype=np.float32), mode="F")
    return np.array(lattice.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def line_noise(rng: np.random.Generator, u: np.ndarray, knots: int) -> np.ndarray:
    """Random piecewise-linear function of u in [0, 1], in [0, 1]: radiating structures
    (vessels, bronchi) are its level lines when u is an angle."""
    values = rng.random(knots + 1)
    return np.interp(u * knots, np.arange(knots + 1), values).astype(np.float32)


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest, shared by all their films (normalised units)."""
    midline: float          # x of the spine
    half_width: float       # midline to the lateral lung wall at the bases (W)
    apex: float             # y of the lung apices
    base_right: float       # y of the costophrenic angle, patient's right (image left)
    base_left: float
    floor: float            # fixed reference height (the left angle at rest): heart, hila, ribs
                            # and lung shape hang from it, so a hemidiaphragm that moves (breath,
                            # atelectasis, emphysema) changes only the pixels near it
    dome: float             # dome height of the hemidiaphragms above their angles
    mediastinum: float      # half-width of the mediastinum (medial lung borders)
    heart_width: float      # heart half-width; heart_width / half_width is the CTR
    heart_height: float     # heart vertical semi-axis
    body_margin: float      # chest wall soft tissue outside the ribs
    rib_spacing: float
    rib_slope: float
    rib_curve: float
    rib_phase: float
    ribs: float             # rib density
    tissue: float           # soft-tissue density
    air: float              # how much darker aerated lung is than soft tissue
    markings: float         # vascular marking strength
    stomach: float          # gastric bubble radius (0: none)
    breast: float           # breast shadow density (0 for men)
    texture_seed: int       # vessels and soft-tissue texture: same on every follow-up
    lucency: float = 0.0    # extra aeration (emphysema)

    def base(self, side: int) -> float:
        return self.base_right if side < 0 else self.base_left

    def hilum(self, side: int) -> tuple[float, float]:
        y = self.apex + 0.42 * (self.floor - self.apex)
        return self.midline + side * (self.mediastinum + 0.025), y

    def heart_center(self) -> tuple[float, float]:
        # The right heart border bulges just past the mediastinum (image left); the heart rests
        # on the left hemidiaphragm.
        cx = self.midline - self.mediastinum - 0.025 + self.heart_width
        cy = self.floor - 0.55 * self.heart_height - 0.03
        return cx, cy

    def lung_point(self, side: int, u: float, v: float) -> tuple[float, float]:
        """Lung-relative position -> (x, y): u from mediastinum (0) to lateral wall (1),
        v from apex (0) to costophrenic angle (1). Lesions are placed this way so they
        follow the anatomy when a film is shifted or taken at a different inspiration."""
        y = self.apex + v * (self.floor - self.apex)
        lateral = self.half_width * (1.0 - 0.45 * (1.0 - v) ** 2)
        t = self.mediastinum + u * (lateral - self.mediastinum)
        return self.midline + side * t, y


def sample_anatomy(rng: np.random.Generator, sex: str) -> Anatomy:
    w = rng.uniform(0.33, 0.39)
    base = rng.uniform(0.70, 0.78)
    ctr = rng.uniform(0.40, 0.48)
    return Anatomy(
        midline=0.5 + rng.normal(0, 0.01), half_width=w, apex=rng.uniform(0.09, 0.14),
        base_right=base - rng.uniform(0.0, 0.03), base_left=base, floor=base,
        dome=rng.uniform(0.05, 0.08),
        mediastinum=rng.uniform(0.045, 0.065),
        heart_width=ctr * w,
        heart_height=rng.uniform(0.13, 0.16), body_margin=rng.uniform(0.04, 0.09),
        rib_spacing=rng.uniform(0.055, 0.068), rib_slope=rng.uniform(0.15, 0.35),
        rib_curve=rng.uniform(0.6, 1.2), rib_phase=rng.uniform(0, 1), ribs=rng.uniform(0.05, 0.09),
        tissue=rng.uniform(0.50, 0.58), air=rng.uniform(0.30, 0.40),
        markings=rng.uniform(0.10, 0.16), stomach=rng.uniform(0.015, 0.03) * (rng.random() < 0.3),
        breast=rng.uniform(0.04, 0.09) if sex == "F" else 0.0,
        texture_seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class Pose:
    """Where a film puts the patient: shift, rotation (radians), zoom, inspiration."""
    dx: float = 0.0
    dy: float = 0.0
    rotation: float = 0.0
    zoom: float = 1.0
    inspiration: float = 0.0   # + deeper breath: lower diaphragm


@dataclass(frozen=True)
class Exposure:
    """How density maps to grey on one film: window, gamma and noise."""
    low: float = 0.0
    high: float = 0.8
    gamma: float = 1.0
    noise: float = 0.015
    grain: float = 0.015


def sample_pose(rng: np.random.Generator) -> Pose:
    return Pose(dx=rng.normal(0, 0.012), dy=rng.normal(0, 0.012), rotation=rng.normal(0, 0.025),
                zoom=rng.uniform(0.96, 1.04), inspiration=rng.normal(0, 0.012))


def sample_exposure(rng: np.random.Generator) -> Exposure:
    return Exposure(low=rng.uniform(-0.02, 0.04), high=rng.uniform(0.76, 0.86),
                    gamma=rng.uniform(0.9, 1.12), noise=rng.uniform(0.005, 0.02),
                    grain=rng.uniform(0.003, 0.015))


def film_anatomy(anatomy: Anatomy, pose: Pose, view: str) -> Anatomy:
    """The patient as one film sees them: breath held deeper or shallower, and on an AP film
    (bedside, shallower breath) a magnified heart."""
    shift = pose.inspiration - (0.015 if view == "AP" else 0.0)
    heart = 1.08 if view == "AP" else 1.0
    return replace(anatomy, base_right=anatomy.base_right + shift,
                   base_left=anatomy.base_left + shift, heart_width=anatomy.heart_width * heart)


@dataclass(frozen=True)
class Grid:
    """Patient coordinates of every pixel centre of one film."""
    size: int
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def make(cls, size: int, pose: Pose) -> "Grid":
        c = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        u, v = np.meshgrid(c, c)
        cos, sin = math.cos(pose.rotation), math.sin(pose.rotation)
        x = (cos * u + sin * v) / pose.zoom + 0.5 - pose.dx
        y = (-sin * u + cos * v) / pose.zoom + 0.5 - pose.dy
        return cls(size, x.astype(np.float32), y.astype(np.float32))


EDGE = 0.008  # soft edge of organ outlines (normalised units)


def lung_inside(a: Anatomy, side: int, x, y):
    """Signed 'inside' of one lung field (positive inside, roughly a distance): the minimum
    of four walls: mediastinal, lateral (widening to the base), apical (a parabola) and the
    hemidiaphragm dome, which meets the lateral wall in the sharp costophrenic angle."""
    t = side * (x - a.midline)
    v = np.clip((y - a.apex) / (a.floor - a.apex), 0.0, 1.0)
    centre = 0.5 * (a.mediastinum + a.half_width)
    half = 0.5 * (a.half_width - a.mediastinum)
    q = (t - centre) / half
    lateral = a.half_width * (1.0 - 0.45 * (1.0 - v) ** 2) - t
    medial = t - a.mediastinum
    apical = y - (a.apex + 0.16 * q * q)
    dome = diaphragm_y(a, side, x) - y
    return np.minimum(np.minimum(lateral, medial), np.minimum(apical, dome))


def diaphragm_y(a: Anatomy, side: int, x):
    """Height of one hemidiaphragm at x: a dome peaking mid-hemithorax, lowest laterally."""
    t = side * (x - a.midline)
    centre = 0.5 * (a.mediastinum + a.half_width)
    half = 0.5 * (a.half_width - a.mediastinum)
    q = (t - centre) / (1.08 * half)
    return a.base(side) - a.dome * (1.0 - q * q)


def lung_mask(a: Anatomy, side: int, grid: Grid) -> np.ndarray:
    return smoothstep(0.0, EDGE, lung_inside(a, side, grid.x, grid.y))


def heart_mask(a: Anatomy, grid: Grid) -> np.ndarray:
    cx, cy = a.heart_center()
    r = ((grid.x - cx) / a.heart_width) ** 2 + ((grid.y - cy) / a.heart_height) ** 2
    return smoothstep(1.0, 1.0 - 2.5 * EDGE / a.heart_width, r)


def mediastinum_mask(a: Anatomy, grid: Grid) -> np.ndarray:
    x, y = grid.x, grid.y
    knob_y = a.apex + 0.17
    width = a.mediastinum + 0.03 * np.exp(-((y - knob_y) / 0.035) ** 2) * (x > a.midline)
    _, heart_y = a.heart_center()
    return (smoothstep(width, width - EDGE, np.abs(x - a.midline))
            * smoothstep(heart_y + 0.05, heart_y, y))


@dataclass
class BaseLayers:
    """Normal anatomy of one film, before any finding."""
    lungs: dict            # side -> soft mask
    lung: np.ndarray       # union of both
    soft: np.ndarray       # heart + mediastinum (over the lungs)
    density: np.ndarray    # body, abdomen, bones, breasts, gastric bubble
    fixed: "FixedLayers"   # with zone and vessels


@dataclass
class FixedLayers:
    """The layers no finding changes (they hang from `Anatomy.floor`, not from the moving
    diaphragm or heart): computed once per film even when a film is rendered again without
    one of its findings."""
    body: np.ndarray
    tissue: np.ndarray     # soft tissue, texture and breasts
    ribs: np.ndarray       # ribs and clavicles
    spine: np.ndarray
    zone: np.ndarray       # 0 at the apices .. 1 at the bases (only meaningful in the lungs)
    vessels: np.ndarray    # vascular markings in [0, 1] (shown only where lung is aerated)
    key: tuple             # the anatomy they were drawn for (see fixed_key)


def fixed_key(a: Anatomy) -> tuple:
    """Everything the fixed layers depend on; `findings.reshape` must leave it alone."""
    return (a.midline, a.half_width, a.apex, a.floor, a.mediastinum, a.body_margin, a.rib_spacing,
            a.rib_slope, a.rib_curve, a.rib_phase, a.ribs, a.tissue, a.breast, a.texture_seed)


def fixed_layers(a: Anatomy, grid: Grid) -> FixedLayers:
    tex = np.random.default_rng(a.texture_seed)
    body = _body(a, grid)
    tissue = (body * (a.tissue + 0.04 * (value_noise(tex, grid.size, 0.12) - 0.5))
              + _breasts(a, grid))
    ribs, spine = _bones(a, grid)
    zone = np.clip((grid.y - a.apex) / (a.floor - a.apex), 0.0, 1.0)
    return FixedLayers(body, tissue, ribs, spine, zone, _vessels(a, grid, tex), fixed_key(a))


def base_layers(a: Anatomy, grid: Grid, fixed: FixedLayers | None = None) -> BaseLayers:
    fixed = fixed_layers(a, grid) if fixed is None else fixed
    if fixed.key != fixed_key(a):
        raise ValueError("fixed layers were drawn for another anatomy")
    lungs = {s: lung_mask(a, s, grid) for s in SIDES}
    lung = np.maximum(lungs[-1], lungs[1])
    soft = np.maximum(heart_mask(a, grid), mediastinum_mask(a, grid))
    below = _below_diaphragm(a, grid) * fixed.body
    density = fixed.tissue + 0.06 * soft * (1.0 - below) + 0.09 * below + _stomach(a, grid)
    density += fixed.ribs * (1.0 - 0.6 * soft) + fixed.spine * (0.3 + 0.7 * soft)
    return BaseLayers(lungs, lung, soft, density, fixed)


def _body(a: Anatomy, grid: Grid) -> np.ndarray:
    x, y = grid.x, grid.y
    shoulder = a.half_width + a.body_margin + 0.04
    width = 0.09 + (shoulder - 0.09) * smoothstep(a.apex - 0.10, a.apex + 0.02, y)
    width = width - 0.03 * smoothstep(a.floor, a.floor + 0.25, y)  # waist
    return smoothstep(width, width - 0.015, np.abs(x - a.midline))


def _below_diaphragm(a: Anatomy, grid: Grid) -> np.ndarray:
    x, y = grid.x, grid.y
    dia = np.where(x < a.midline, diaphragm_y(a, -1, x), diaphragm_y(a, 1, x))
    return smoothstep(0.0, EDGE, y - dia)


def _bones(a: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    x, y = grid.x, grid.y
    t = np.abs(x - a.midline)
    # Posterior ribs: bands leaving the spine nearly horizontal and curving down laterally.
    r = (y - a.apex + 0.035 - a.rib_slope * t - a.rib_curve * t * t) / a.rib_spacing + a.rib_phase
    frac = r - np.floor(r)
    ribs = bump(frac - 0.2, 0.17, 0.07) * ((r > 0) & (r < 11))
    anterior = (y - a.apex - 0.05 + 0.55 * t) / (1.15 * a.rib_spacing)
    ribs_a = bump(anterior - np.floor(anterior) - 0.5, 0.13, 0.06) * smoothstep(0.08, 0.16, t)
    chest = smoothstep(a.half_width + 0.03, a.half_width + 0.005, t) * smoothstep(0.02, 0.04, t)
    chest = chest * smoothstep(a.floor + 0.02, a.floor - 0.03, y)
    bones = chest * (a.ribs * ribs + 0.3 * a.ribs * ribs_a * (anterior > 0))
    for side in SIDES:  # clavicles
        p0 = (a.midline + side * 0.04, a.apex + 0.035)
        p1 = (a.midline + side * (a.half_width - 0.02), a.apex - 0.045)
        bones += 0.12 * smoothstep(0.013, 0.008, segment_distance(x, y, p0, p1))
    spine = bump(x - a.midline, 0.028, 0.008)
    discs = 0.5 + 0.5 * np.cos(2 * math.pi * y / 0.042)
    return bones, spine * (0.03 + 0.03 * discs)


def _breasts(a: Anatomy, grid: Grid) -> np.ndarray:
    if a.breast <= 0:
        return np.zeros_like(grid.x)
    t = np.abs(grid.x - a.midline)
    cy = a.floor - 0.06
    r = ((t - 0.6 * a.half_width) / (0.45 * a.half_width)) ** 2 + ((grid.y - cy) / 0.14) ** 2
    return a.breast * smoothstep(1.0, 0.4, r) * smoothstep(cy - 0.1, cy - 0.02, grid.y)


def _stomach(a: Anatomy, grid: Grid) -> np.ndarray:
    if a.stomach <= 0:
        return np.zeros_like(grid.x)
    cx = a.midline + 0.55 * a.half_width
    cy = diaphragm_y(a, 1, cx) + a.stomach + 0.012
    d = np.hypot(grid.x - cx, (grid.y - cy) * 1.3)
    return -0.16 * smoothstep(a.stomach, a.stomach - 0.01, d)


def _vessels(a: Anatomy, grid: Grid, tex: np.random.Generator) -> np.ndarray:
    """Vascular markings: lines radiating from each hilum, thick and bright centrally,
    fading towards the periphery (the outer third of a normal lung shows almost none).
    Both lungs in one pass; the sine of the angle stands in for atan2 (it is monotonic on
    the lateral side, which is all the lung field shows)."""
    right = grid.x >= a.midline
    (hx_left, hy), (hx_right, _) = a.hilum(-1), a.hilum(1)
    dx = np.where(right, grid.x - hx_right, hx_left - grid.x)
    dy = grid.y - hy
    r = np.hypot(dx, dy) + 1e-4
    u = (dy / r + 1.0) * 0.25 + 0.5 * right  # left lung in [0, 0.5], right lung in [0.5, 1]
    big = line_noise(tex, u, 64)
    small = line_noise(tex, u + 0.1 * r, 160)
    width = 0.03 + 0.12 * smoothstep(0.3, 0.0, r)  # vessels taper to the periphery
    lines = smoothstep(width, 0.0, np.abs(big - 0.5)) * smoothstep(0.32, 0.02, r)
    lines += smoothstep(0.07, 0.0, r)  # the hilar shadow itself
    lines += 0.6 * smoothstep(0.05, 0.0, np.abs(small - 0.5)) * smoothstep(0.26, 0.05, r) \
        * smoothstep(0.03, 0.08, r)
    return np.clip(lines, 0.0, 1.0)


@dataclass
class Fields:
    """What the findings of one film add up to (all HxW, zero where no finding acts):
    opacity (lung air replaced by fluid/tissue, 0..1), lucency (extra air), markings lost
    (0..1) and plain added density (pleura, bands, hernia contents)."""
    opacity: np.ndarray
    lucency: np.ndarray
    no_markings: np.ndarray
    density: np.ndarray

    @classmethod
    def zeros(cls, shape) -> "Fields":
        return cls(*(np.zeros(shape, np.float32) for _ in range(4)))


def compose(a: Anatomy, base: BaseLayers, f: Fields) -> np.ndarray:
    """Density of one film: soft tissue minus lung air (less where the heart overlies it or
    a finding fills the air spaces), plus vessels, bones and whatever the findings add."""
    aerated = base.lung * (1.0 - f.opacity)
    air = a.air * (1.0 + a.lucency + f.lucency) * (1.0 - 0.25 * base.fixed.zone) \
        * (1.0 - 0.95 * base.soft)
    vessels = a.markings * base.fixed.vessels * (1.0 - base.soft) * (1.0 - f.no_markings)
    return base.density - aerated * (air - vessels) + f.density


def expose(density: np.ndarray, e: Exposure, noise: np.ndarray) -> np.ndarray:
    """Density -> 8-bit grey: window, gamma, then quantum noise (pointwise, so a finding
    changes only the pixels it touches)."""
    g = np.clip((density - e.low) / (e.high - e.low), 0.0, 1.0) ** e.gamma
    return np.clip(np.rint((g + noise) * 255.0), 0, 255).astype(np.uint8)


def film_noise(rng: np.random.Generator, grid: Grid, e: Exposure) -> np.ndarray:
    white = rng.standard_normal(grid.x.shape, dtype=np.float32) * e.noise
    return white + e.grain * (value_noise(rng, grid.size, 0.02) - 0.5) * 2.0

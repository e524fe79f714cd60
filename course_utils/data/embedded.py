"""The course's embedded dataset: procedurally generated 64x64 RGB objects on clutter.

Every image is a function of ``(seed, class set, index)`` only, so generation is
deterministic whatever the chunking or number of worker processes, and the first ``n``
images of a longer run equal a shorter run. Each image shows one object built from parts
(drawn with signed distance functions and a soft one-pixel edge, so it is antialiased) at a
random position, scale, rotation and colour, in front of a cluttered background of
low-contrast shapes, lines, a colour gradient and pixel noise.

Main classes (:data:`EMBEDDED_CLASSES`): a face (head, left eye, right eye, nose, mouth),
house, car, flower and tree (objects with parts), three discs that differ only by their
texture (stripes, checkerboard, dots), a star and a cross. :data:`HELDOUT_CLASSES` are
never used for training; they serve the feature-generalization experiment.

Per image the generator records the object's pixels (``masks``) and, for faces, the
``(x, y)`` image coordinates of the left eye, right eye and nose (``parts``) with the part
radius in pixels (``part_radius``). Coordinates are in pixels with pixel ``(row, col)``
centred at ``x = col, y = row``. "Left eye" is the eye on the image's left side: faces are
never mirrored and turn by at most 30 degrees, so its ``x`` is always the smaller one.
"""
from __future__ import annotations

import colorsys
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .core import DATA_DIR, CacheError, ImageTensorDataset, load_array_cache, save_array_cache

__all__ = [
    "EMBEDDED_CLASSES",
    "HELDOUT_CLASSES",
    "CLASS_SETS",
    "SPLITS",
    "DEFAULT_NUM_IMAGES",
    "GENERATOR_VERSION",
    "IMAGE_SIZE",
    "STATS_IMAGES",
    "generate_shapes",
    "split_seed",
    "load_embedded",
]

EMBEDDED_CLASSES: tuple[str, ...] = (
    "face", "house", "car", "flower", "tree",
    "striped_disc", "checkered_disc", "dotted_disc", "star", "cross",
)
HELDOUT_CLASSES: tuple[str, ...] = ("fish", "butterfly", "arrow", "crescent", "target")
#: Class sets by name; ``classes=`` arguments take these keys.
CLASS_SETS: dict[str, tuple[str, ...]] = {"main": EMBEDDED_CLASSES, "heldout": HELDOUT_CLASSES}
#: Splits of :func:`load_embedded`; each draws from its own seed (see :func:`split_seed`).
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Images per split when ``num_images`` is not given.
DEFAULT_NUM_IMAGES: dict[str, dict[str, int]] = {
    "main": {"train": 10_000, "val": 2_000, "test": 2_000},
    "heldout": {"train": 2_500, "val": 1_000, "test": 1_000},
}
#: Side of the images that :func:`load_embedded` serves.
IMAGE_SIZE = 64
#: Bumped whenever the pictures change, so old caches are never reused.
GENERATOR_VERSION = 3
#: The normalization statistics come from this many first images of the training split.
STATS_IMAGES = 500

_EDGE_PX = 1.0  # width of the antialiased edge in pixels
_PARALLEL_MIN_IMAGES = 2_000  # below this, one process is faster than starting workers


# --------------------------------------------------------------------------------------
# Signed distance functions on local coordinate grids u, v (H, W); negative inside.
# --------------------------------------------------------------------------------------
def _rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame turned by ``angle`` radians."""
    if angle == 0.0:
        return u, v
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, c * v - s * u


def _sd_circle(u: np.ndarray, v: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    return np.hypot(u - cx, v - cy) - radius


def _sd_ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, a: float, b: float,
                angle: float = 0.0) -> np.ndarray:
    """Approximate distance to an ellipse with half-axes ``a`` (along ``angle``) and ``b``."""
    x, y = _rotate(u - cx, v - cy, angle)
    return (np.hypot(x / a, y / b) - 1.0) * min(a, b)


def _sd_box(u: np.ndarray, v: np.ndarray, cx: float, cy: float, half_width: float,
            half_height: float, angle: float = 0.0, corner: float = 0.0) -> np.ndarray:
    """Box with half sizes ``half_width`` x ``half_height`` and rounded corners of radius ``corner``."""
    x, y = _rotate(u - cx, v - cy, angle)
    qx = np.abs(x) - half_width + corner
    qy = np.abs(y) - half_height + corner
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - corner


def _sd_segment(u: np.ndarray, v: np.ndarray, start: tuple[float, float], stop: tuple[float, float],
                radius: float) -> np.ndarray:
    """Capsule: points within ``radius`` of the segment ``start``-``stop``."""
    ax, ay = start
    ex, ey = stop[0] - ax, stop[1] - ay
    wx, wy = u - ax, v - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    return np.hypot(wx - t * ex, wy - t * ey) - radius


def _sd_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact distance to a simple polygon (convex or not), ``vertices`` of shape (K, 2)."""
    squared = (u - vertices[0, 0]) ** 2 + (v - vertices[0, 1]) ** 2
    inside = np.zeros(u.shape, dtype=bool)
    previous = vertices[-1]
    for vertex in vertices:
        ex, ey = previous[0] - vertex[0], previous[1] - vertex[1]
        wx, wy = u - vertex[0], v - vertex[1]
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        squared = np.minimum(squared, (wx - t * ex) ** 2 + (wy - t * ey) ** 2)
        crosses = (v >= vertex[1]) != (v >= previous[1])  # the edge spans this row
        left = ex * wy > ey * wx
        inside ^= crosses & (left == (previous[1] > vertex[1]))
        previous = vertex
    distance = np.sqrt(squared)
    return np.where(inside, -distance, distance)


# --------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------
def _luma(colour: np.ndarray) -> float:
    return float(colour @ np.array([0.299, 0.587, 0.114]))


def _colour(rng: np.random.Generator, hue: tuple[float, float] = (0.0, 1.0),
            saturation: tuple[float, float] = (0.35, 0.95), value: tuple[float, float] = (0.1, 1.0),
            far_from: np.ndarray | None = None, contrast: float = 0.3) -> np.ndarray:
    """A random RGB colour in [0, 1], optionally with luma at least ``contrast`` from ``far_from``.

    Rejection-samples (deterministically from ``rng``); when no draw qualifies the value
    range is widened to reach black or white, whichever is farther from ``far_from``.
    """
    for attempt in range(40):
        low, high = value if attempt < 20 else (0.0, 1.0)
        rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*saturation),
                                           rng.uniform(low, high)))
        if far_from is None or abs(_luma(rgb) - _luma(far_from)) >= contrast:
            return rgb
    return np.zeros(3) if _luma(far_from) > 0.5 else np.ones(3)


# --------------------------------------------------------------------------------------
# Objects. A renderer draws in local units (the object spans about [-1, 1]^2, y pointing
# down) and returns layers painted back to front.
# --------------------------------------------------------------------------------------
_Paint = np.ndarray  # (3,) colour or (H, W, 3) colour field


@dataclass
class _Drawing:
    """An object as SDF layers in local units, with the face parts when it has them."""

    layers: list[tuple[np.ndarray, _Paint]] = field(default_factory=list)  # (sdf, paint)
    parts: np.ndarray | None = None  # (3, 2) local (u, v) of left eye, right eye, nose
    part_radius: float = float("nan")  # in local units


@dataclass(frozen=True)
class _Pen:
    """What a renderer draws with: local coordinates (H, W) and the image's colours."""

    u: np.ndarray
    v: np.ndarray
    rng: np.random.Generator
    ink: np.ndarray  # the object's main colour, contrasting with the ground
    ground: np.ndarray  # the background colour at the object's centre
    pixels_per_unit: float


@dataclass(frozen=True)
class _Style:
    max_rotation_deg: float  # rotation drawn uniformly in +-this
    mirror: bool  # mirror left-right with probability 1/2
    extent: float  # radius (local units) that the object reaches from its centre


def _textured_disc(pen: _Pen, texture: Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]
                   ) -> _Drawing:
    """A unit disc filled with two colours mixed by ``texture(x, y, period, edge)`` in [0, 1]."""
    period = pen.rng.uniform(0.42, 0.6)
    second = _colour(pen.rng, far_from=pen.ink, contrast=0.35)
    x, y = _rotate(pen.u, pen.v, pen.rng.uniform(0.0, np.pi))
    mix = texture(x, y, period, _EDGE_PX / pen.pixels_per_unit)[..., None]
    return _Drawing([(_sd_circle(pen.u, pen.v, 0.0, 0.0, 1.0), pen.ink + mix * (second - pen.ink))])


def _stripes(x: np.ndarray, y: np.ndarray, period: float, edge: float) -> np.ndarray:
    wave = np.sin(2 * np.pi * x / period)
    return np.clip(0.5 + wave * period / (2 * np.pi * edge), 0.0, 1.0)


def _checks(x: np.ndarray, y: np.ndarray, period: float, edge: float) -> np.ndarray:
    wave = np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period)
    return np.clip(0.5 + wave * period / (2 * np.pi * edge), 0.0, 1.0)


def _dots(x: np.ndarray, y: np.ndarray, period: float, edge: float) -> np.ndarray:
    dx = x - period * np.round(x / period)
    dy = y - period * np.round(y / period)
    return np.clip(0.5 - (np.hypot(dx, dy) - 0.28 * period) / edge, 0.0, 1.0)


def _draw_face(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    head = _sd_ellipse(u, v, 0.0, 0.0, rng.uniform(0.72, 0.85), rng.uniform(0.92, 1.0))
    eye_x, eye_y = rng.uniform(0.28, 0.36), rng.uniform(-0.32, -0.2)
    eye_radius = rng.uniform(0.15, 0.19)
    nose_y, nose_radius = rng.uniform(0.08, 0.2), eye_radius * rng.uniform(0.8, 1.0)
    eye_colour = _colour(rng, far_from=ink, contrast=0.4)
    pupil_colour = _colour(rng, far_from=eye_colour, contrast=0.3)
    nose_colour = _colour(rng, far_from=ink, contrast=0.3)
    mouth_colour = _colour(rng, far_from=ink, contrast=0.35)
    eyes = np.minimum(_sd_circle(u, v, -eye_x, eye_y, eye_radius), _sd_circle(u, v, eye_x, eye_y, eye_radius))
    pupils = np.minimum(_sd_circle(u, v, -eye_x, eye_y, 0.45 * eye_radius),
                        _sd_circle(u, v, eye_x, eye_y, 0.45 * eye_radius))
    nose = _sd_polygon(u, v, np.array([[0.0, nose_y - 1.3 * nose_radius],
                                       [-nose_radius, nose_y + 0.7 * nose_radius],
                                       [nose_radius, nose_y + 0.7 * nose_radius]]))
    nose = np.minimum(nose, _sd_circle(u, v, 0.0, nose_y + 0.2 * nose_radius, 0.75 * nose_radius))
    smile_radius = rng.uniform(0.3, 0.42)
    smile_top = nose_y + nose_radius + 0.12
    arc = np.abs(_sd_circle(u, v, 0.0, smile_top + 0.05, smile_radius)) - 0.055
    mouth = np.maximum(arc, smile_top + 0.05 + 0.35 * smile_radius - v)  # lower part of the ring only
    parts = np.array([[-eye_x, eye_y], [eye_x, eye_y], [0.0, nose_y]])
    layers = [(head, ink), (eyes, eye_colour), (pupils, pupil_colour), (nose, nose_colour), (mouth, mouth_colour)]
    return _Drawing(layers, parts, max(eye_radius, nose_radius))


def _draw_house(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    width = rng.uniform(0.55, 0.7)
    wall_top = rng.uniform(-0.3, -0.15)
    walls = _sd_box(u, v, 0.0, (wall_top + 0.85) / 2, width, (0.85 - wall_top) / 2)
    roof = _sd_polygon(u, v, np.array([[-width - 0.2, wall_top + 0.05], [width + 0.2, wall_top + 0.05],
                                       [0.0, rng.uniform(-1.0, -0.8)]]))
    door_x = rng.choice([-1.0, 1.0]) * width * 0.45
    door = _sd_box(u, v, door_x, 0.6, 0.14, 0.25)
    window = _sd_box(u, v, -door_x, 0.25, 0.15, 0.14)
    roof_colour = _colour(rng, far_from=ink, contrast=0.25)
    door_colour = _colour(rng, far_from=ink, contrast=0.35)
    window_colour = _colour(rng, saturation=(0.0, 0.4), far_from=ink, contrast=0.4)
    return _Drawing([(walls, ink), (roof, roof_colour), (door, door_colour), (window, window_colour)])


def _draw_car(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    body = _sd_box(u, v, 0.0, 0.12, 1.0, rng.uniform(0.2, 0.27), corner=0.1)
    roof_y = rng.uniform(-0.55, -0.42)
    cabin_outline = np.array([[-0.6, -0.1], [0.45, -0.1], [0.25, roof_y], [-0.45, roof_y]])
    cabin = _sd_polygon(u, v, cabin_outline)
    glass = _sd_polygon(u, v, cabin_outline * 0.78 + np.array([0.0, -0.04]))
    wheel_radius = rng.uniform(0.2, 0.25)
    wheels = np.minimum(_sd_circle(u, v, -0.58, 0.4, wheel_radius), _sd_circle(u, v, 0.58, 0.4, wheel_radius))
    hubs = np.minimum(_sd_circle(u, v, -0.58, 0.4, 0.4 * wheel_radius), _sd_circle(u, v, 0.58, 0.4, 0.4 * wheel_radius))
    glass_colour = _colour(rng, saturation=(0.0, 0.4), far_from=ink, contrast=0.35)
    tyre_colour = _colour(rng, saturation=(0.0, 0.3), value=(0.0, 0.25), far_from=ink, contrast=0.3)
    hub_colour = _colour(rng, saturation=(0.0, 0.2), far_from=tyre_colour, contrast=0.4)
    return _Drawing([(np.minimum(body, cabin), ink), (glass, glass_colour), (wheels, tyre_colour), (hubs, hub_colour)])


def _draw_flower(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    count = int(rng.integers(5, 9))
    head_y, ring = -0.3, rng.uniform(0.33, 0.4)
    turn = rng.uniform(0.0, 2 * np.pi)
    petals = np.full(u.shape, np.inf)
    for angle in turn + 2 * np.pi * np.arange(count) / count:
        petals = np.minimum(petals, _sd_ellipse(u, v, ring * np.cos(angle), head_y + ring * np.sin(angle),
                                                0.3, 0.15, angle))
    centre = _sd_circle(u, v, 0.0, head_y, rng.uniform(0.17, 0.22))
    stem_colour = _colour(rng, hue=(0.22, 0.42), far_from=pen.ground, contrast=0.25)
    stem = _sd_segment(u, v, (0.0, head_y), (0.0, 1.0), 0.06)
    side = rng.choice([-1.0, 1.0])
    leaf = _sd_ellipse(u, v, side * 0.2, 0.55, 0.22, 0.09, side * -0.5)
    centre_colour = _colour(rng, far_from=ink, contrast=0.35)
    return _Drawing([(np.minimum(stem, leaf), stem_colour), (petals, ink), (centre, centre_colour)])


def _draw_tree(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    trunk_colour = _colour(rng, hue=(0.03, 0.11), saturation=(0.4, 0.8), value=(0.2, 0.65), far_from=pen.ground,
                           contrast=0.2)
    crown_colour = _colour(rng, hue=(0.2, 0.45), saturation=(0.4, 0.9), far_from=pen.ground, contrast=0.3)
    trunk = _sd_box(u, v, 0.0, 0.6, rng.uniform(0.1, 0.15), 0.4)
    if rng.random() < 0.5:  # broadleaf: a cluster of discs
        crown = np.minimum.reduce([
            _sd_circle(u, v, -0.32, -0.15, 0.4), _sd_circle(u, v, 0.32, -0.15, 0.4),
            _sd_circle(u, v, 0.0, -0.5, 0.45), _sd_circle(u, v, 0.0, -0.1, 0.4),
        ])
    else:  # conifer: stacked triangles
        crown = np.minimum.reduce([
            _sd_polygon(u, v, np.array([[-w, y], [w, y], [0.0, y - 0.65]]))
            for w, y in ((0.75, 0.25), (0.6, -0.15), (0.45, -0.5))
        ])
    return _Drawing([(trunk, trunk_colour), (crown, crown_colour)])


def _draw_star(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    angles = -np.pi / 2 + np.pi * np.arange(10) / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
    star = _sd_polygon(u, v, np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))
    return _Drawing([(star, ink)])


def _draw_cross(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    arm = rng.uniform(0.25, 0.33)
    cross = np.minimum(_sd_box(u, v, 0.0, 0.0, 0.95, arm, corner=0.05), _sd_box(u, v, 0.0, 0.0, arm, 0.95, corner=0.05))
    return _Drawing([(cross, ink)])


def _draw_striped_disc(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    return _textured_disc(pen, _stripes)


def _draw_checkered_disc(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    return _textured_disc(pen, _checks)


def _draw_dotted_disc(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    return _textured_disc(pen, _dots)


def _draw_fish(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    body = _sd_ellipse(u, v, -0.15, 0.0, 0.75, rng.uniform(0.35, 0.45))
    tail = _sd_polygon(u, v, np.array([[0.45, 0.0], [1.0, -0.45], [1.0, 0.45]]))
    fin = _sd_polygon(u, v, np.array([[-0.35, -0.3], [0.15, -0.32], [-0.1, -0.62]]))
    eye_colour = _colour(rng, far_from=ink, contrast=0.4)
    fin_colour = _colour(rng, far_from=ink, contrast=0.2)
    return _Drawing([(np.minimum(body, tail), ink), (fin, fin_colour),
                     (_sd_circle(u, v, -0.6, -0.08, 0.09), eye_colour)])


def _draw_butterfly(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    wings = np.full(u.shape, np.inf)
    spots = np.full(u.shape, np.inf)
    for side in (-1.0, 1.0):
        wings = np.minimum(wings, _sd_ellipse(u, v, side * 0.48, -0.3, 0.48, 0.36, side * 0.5))
        wings = np.minimum(wings, _sd_ellipse(u, v, side * 0.35, 0.38, 0.34, 0.26, side * -0.5))
        spots = np.minimum(spots, _sd_circle(u, v, side * 0.55, -0.35, 0.13))
    body = _sd_segment(u, v, (0.0, -0.6), (0.0, 0.65), 0.08)
    body_colour = _colour(rng, value=(0.0, 0.35), far_from=ink, contrast=0.3)
    spot_colour = _colour(rng, far_from=ink, contrast=0.35)
    return _Drawing([(wings, ink), (spots, spot_colour), (body, body_colour)])


def _draw_arrow(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    shaft = _sd_box(u, v, -0.3, 0.0, 0.65, rng.uniform(0.1, 0.16))
    head = _sd_polygon(u, v, np.array([[0.25, -0.5], [1.0, 0.0], [0.25, 0.5]]))
    return _Drawing([(np.minimum(shaft, head), ink)])


def _draw_crescent(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    bite = _sd_circle(u, v, rng.uniform(0.3, 0.45), -0.1, 0.78)
    return _Drawing([(np.maximum(_sd_circle(u, v, 0.0, 0.0, 0.95), -bite), ink)])


def _draw_target(pen: _Pen) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    second = _colour(rng, far_from=ink, contrast=0.35)
    band = 1.0 / rng.integers(3, 5)  # 3 or 4 rings of each colour
    radius = np.hypot(u, v)
    # Bands counted inwards from the rim, so the outermost band is always ``ink``.
    rings = _stripes(1.0 - radius - band / 2, radius, 2 * band, _EDGE_PX / pen.pixels_per_unit)[..., None]
    return _Drawing([(radius - 1.0, ink + rings * (second - ink))])


_RENDERERS: dict[str, tuple[Callable[..., _Drawing], _Style]] = {
    "face": (_draw_face, _Style(30.0, False, 1.0)),
    "house": (_draw_house, _Style(20.0, True, 1.05)),
    "car": (_draw_car, _Style(20.0, True, 1.0)),
    "flower": (_draw_flower, _Style(35.0, True, 1.0)),
    "tree": (_draw_tree, _Style(15.0, True, 1.0)),
    "striped_disc": (_draw_striped_disc, _Style(180.0, False, 1.0)),
    "checkered_disc": (_draw_checkered_disc, _Style(180.0, False, 1.0)),
    "dotted_disc": (_draw_dotted_disc, _Style(180.0, False, 1.0)),
    "star": (_draw_star, _Style(180.0, False, 1.0)),
    "cross": (_draw_cross, _Style(180.0, False, 1.0)),
    "fish": (_draw_fish, _Style(30.0, True, 1.0)),
    "butterfly": (_draw_butterfly, _Style(35.0, False, 1.0)),
    "arrow": (_draw_arrow, _Style(180.0, False, 1.0)),
    "crescent": (_draw_crescent, _Style(180.0, False, 1.0)),
    "target": (_draw_target, _Style(180.0, False, 1.0)),
}


# --------------------------------------------------------------------------------------
# Whole images
# --------------------------------------------------------------------------------------
def _paint(canvas: np.ndarray, sdf_pixels: np.ndarray, paint: _Paint) -> np.ndarray:
    """Blend ``paint`` over ``canvas`` (H, W, 3) where the pixel-unit SDF is inside; returns alpha."""
    alpha = np.clip(0.5 - sdf_pixels / _EDGE_PX, 0.0, 1.0)
    canvas += alpha[..., None] * (paint - canvas)
    return alpha


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Cluttered background (H, W, 3) in [0, 1]: gradient, low-contrast shapes and lines."""
    base = _colour(rng, saturation=(0.05, 0.5), value=(0.3, 0.75))
    slope = rng.uniform(-0.12, 0.12, size=(2, 3)) / size
    canvas = base + (x - size / 2)[..., None] * slope[0] + (y - size / 2)[..., None] * slope[1]
    for _ in range(int(rng.integers(5, 10))):
        shade = np.clip(base + rng.uniform(-0.1, 0.1, size=3), 0.0, 1.0)
        cx, cy = rng.uniform(-0.1, 1.1, size=2) * size
        kind = rng.integers(3)
        if kind == 0:
            sdf = _sd_circle(x, y, cx, cy, rng.uniform(0.03, 0.16) * size)
        elif kind == 1:
            sdf = _sd_box(x, y, cx, cy, *(rng.uniform(0.03, 0.15, size=2) * size), angle=rng.uniform(0, np.pi))
        else:
            angle, length = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6) * size
            offset = np.array([np.cos(angle), np.sin(angle)]) * length / 2
            sdf = _sd_segment(x, y, (cx - offset[0], cy - offset[1]), (cx + offset[0], cy + offset[1]),
                              rng.uniform(0.4, 1.6))
        _paint(canvas, sdf, shade)
    return canvas


def _render_image(rng: np.random.Generator, class_name: str, size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One picture: ``(image (3, H, W) uint8, mask (H, W) bool, parts (3, 2), part_radius)``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    canvas = _background(rng, x, y, size)
    draw, style = _RENDERERS[class_name]
    scale = rng.uniform(0.21, 0.31) * size  # pixels per local unit
    margin = 0.85 * style.extent * scale
    centre = rng.uniform(margin, size - 1 - margin, size=2)
    angle = np.deg2rad(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    mirror = -1.0 if style.mirror and rng.random() < 0.5 else 1.0
    u, v = _rotate((x - centre[0]) / scale, (y - centre[1]) / scale, angle)
    u = mirror * u
    ground = canvas[int(centre[1]), int(centre[0])].copy()
    drawing = draw(_Pen(u, v, rng, _colour(rng, far_from=ground, contrast=0.35), ground, scale))
    coverage = np.zeros((size, size), dtype=np.float32)
    for sdf, paint in drawing.layers:
        coverage = np.maximum(coverage, _paint(canvas, sdf * scale, paint))
    canvas += rng.normal(0.0, rng.uniform(0.01, 0.03), size=canvas.shape)
    image = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    parts = np.full((3, 2), np.nan, dtype=np.float32)
    if drawing.parts is not None:  # local (u, v) -> image (x, y); faces are never mirrored
        c, s = np.cos(angle), np.sin(angle)
        pu, pv = drawing.parts[:, 0] * mirror, drawing.parts[:, 1]
        parts[:, 0] = centre[0] + scale * (c * pu - s * pv)
        parts[:, 1] = centre[1] + scale * (s * pu + c * pv)
    return image, coverage >= 0.5, parts, drawing.part_radius * scale


def _class_set(classes: str) -> tuple[int, tuple[str, ...]]:
    if classes not in CLASS_SETS:
        raise ValueError(f"unknown classes {classes!r}: use one of {', '.join(map(repr, CLASS_SETS))}")
    return list(CLASS_SETS).index(classes), CLASS_SETS[classes]


def _labels(start: int, stop: int, seed: int, set_index: int, num_classes: int) -> np.ndarray:
    """Labels of images ``start..stop-1``: each block of ``num_classes`` images is a permutation."""
    blocks = range(start // num_classes, (stop - 1) // num_classes + 1)
    labels = np.concatenate([
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(set_index, 0, block))).permutation(num_classes)
        for block in blocks
    ])
    offset = blocks[0] * num_classes
    return labels[start - offset:stop - offset]


def _render_range(start: int, stop: int, seed: int, classes: str, size: int) -> dict[str, np.ndarray]:
    """Images ``start..stop-1`` of the stream ``(seed, classes)`` (what one worker does)."""
    set_index, names = _class_set(classes)
    labels = _labels(start, stop, seed, set_index, len(names))
    count = stop - start
    out = {
        "images": np.empty((count, 3, size, size), dtype=np.uint8),
        "labels": labels.astype(np.int64),
        "parts": np.empty((count, 3, 2), dtype=np.float32),
        "part_radius": np.empty(count, dtype=np.float32),
        "masks": np.empty((count, size, size), dtype=bool),
    }
    for row, (index, label) in enumerate(zip(range(start, stop), labels)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(set_index, 1, index)))
        out["images"][row], out["masks"][row], out["parts"][row], out["part_radius"][row] = _render_image(
            rng, names[label], size)
    return out


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts instantly on Linux (as torch's DataLoader does); elsewhere the default.
    return multiprocessing.get_context("fork" if sys.platform == "linux" else None)


def generate_shapes(num_images: int, seed: int, classes: str = "main", image_size: int = 64,
                    progress: bool = True, workers: int | None = None) -> dict[str, np.ndarray]:
    """Generate ``num_images`` pictures of the class set ``classes`` ("main" or "heldout").

    Image ``i`` depends only on ``(seed, classes, i, image_size)``; every block of
    ``len(classes)`` consecutive images holds each class once.

    Args:
        image_size: side of the square images in pixels (objects scale with it).
        progress: show a progress bar.
        workers: processes to use; ``None`` uses up to 2 for 2,000 images or more.

    Returns:
        ``images`` (N, 3, H, W) uint8, ``labels`` (N,) int64, ``parts`` (N, 3, 2) float32
        (x, y) of left eye, right eye, nose for faces and NaN otherwise, ``part_radius``
        (N,) float32 eye/nose radius in pixels for faces (NaN otherwise), ``masks``
        (N, H, W) bool, the object's pixels.
    """
    _class_set(classes)
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}")
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if num_images >= _PARALLEL_MIN_IMAGES else 1
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (1 runs in this process), got {workers!r}")
    chunk = max(1, min(250, -(-num_images // workers)))
    bounds = [(start, min(start + chunk, num_images)) for start in range(0, num_images, chunk)]
    arguments = (int(seed), classes, int(image_size))
    results: dict[int, dict[str, np.ndarray]] = {}
    with tqdm(total=num_images, desc=f"generating {classes} shapes", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for start, stop in bounds:
                results[start] = _render_range(start, stop, *arguments)
                bar.update(stop - start)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
                futures = {pool.submit(_render_range, start, stop, *arguments): (start, stop) for start, stop in bounds}
                for future in as_completed(futures):
                    start, stop = futures[future]
                    results[start] = future.result()
                    bar.update(stop - start)
    pieces = [results[start] for start, _ in bounds]
    return {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}


def split_seed(seed: int, split: str) -> int:
    """The generator seed of ``split`` ("train", "val", "test"): independent streams per split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(map(repr, SPLITS))}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(SPLITS.index(split),))
    return int(sequence.generate_state(1, np.uint64)[0])


def _channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, 3, H, W)."""
    values = images.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255.0
    return values.mean(axis=1), values.std(axis=1)


def load_embedded(split: str = "train", root: str | Path | None = None, seed: int = 0, classes: str = "main",
                  num_images: int | None = None, progress: bool = True) -> ImageTensorDataset:
    """The embedded dataset's ``split``, generated once and then read from a hashed cache.

    Args:
        split: "train", "val" or "test"; each has its own seed derived from ``seed``.
        root: cache folder (default ``DATA_DIR / "cache"``).
        classes: "main" (:data:`EMBEDDED_CLASSES`) or "heldout" (:data:`HELDOUT_CLASSES`).
        num_images: images in the split (default :data:`DEFAULT_NUM_IMAGES`).

    Returns:
        An :class:`ImageTensorDataset` (images (N, 3, 64, 64) uint8) whose mean/std are those
        of the first :data:`STATS_IMAGES` training images of the same seed and classes, with
        extras ``parts`` (N, 3, 2), ``part_radius`` (N,) and ``masks`` (N, 64, 64) bool.
        A corrupt, partial or mismatching cache file is reported with a warning and rebuilt.
    """
    seed_of_split = split_seed(seed, split)  # checks split and seed
    _, names = _class_set(classes)
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES[classes][split]
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer or None for the default, got {num_images!r}")
    path = Path(root if root is not None else DATA_DIR / "cache") / (
        f"embedded-{classes}-{split}-seed{seed}-n{num_images}-v{GENERATOR_VERSION}.npz")
    info = {"dataset": "embedded", "classes": classes, "class_names": list(names), "split": split,
            "seed": int(seed), "num_images": int(num_images), "image_size": IMAGE_SIZE,
            "generator_version": GENERATOR_VERSION, "stats_images": STATS_IMAGES}
    arrays = None
    if path.exists() or path.with_suffix(".json").exists():
        try:
            arrays = load_array_cache(path, info)
        except CacheError as error:
            warnings.warn(f"{error}; regenerating it", RuntimeWarning, stacklevel=2)
    if arrays is None:
        arrays = generate_shapes(num_images, seed_of_split, classes, IMAGE_SIZE, progress)
        if split == "train" and num_images >= STATS_IMAGES:
            sample = arrays["images"][:STATS_IMAGES]  # identical to a fresh STATS_IMAGES run
        else:
            sample = generate_shapes(STATS_IMAGES, split_seed(seed, "train"), classes, IMAGE_SIZE, progress)["images"]
        arrays["mean"], arrays["std"] = _channel_statistics(sample)
        save_array_cache(path, arrays, info)
    return ImageTensorDataset(
        torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]), names,
        arrays["mean"].tolist(), arrays["std"].tolist(),
        {key: torch.from_numpy(arrays[key]) for key in ("parts", "part_radius", "masks")},
    )

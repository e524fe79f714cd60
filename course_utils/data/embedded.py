"""The course's embedded dataset: procedurally generated 64x64 RGB objects in clutter.

Every image is a function of ``(seed, class set, index)`` only, so generation is
deterministic whatever the chunking or number of worker processes, and the first ``n``
images of a longer run equal a shorter run. Objects are built from parts (drawn with signed
distance functions and a soft one-pixel edge, so they are antialiased).

It is made to be hard the way photos are hard. The 38 main classes (:data:`EMBEDDED_CLASSES`)
come in families that share parts and differ in them, so that parts, not colour, tell classes
apart: 12 faces (every pairing of round/square/slit eyes with no/pointy/round/long ears, the
snout - button, triangle or muzzle - decided by both), 8 vehicles (car/truck/bus bodies with
two or three wheels and round or square windows), 6 houses (gable/flat/dome roofs, round or
square windows, a chimney or not), 6 plants and 6 rotation-symmetric shapes
(:data:`SYMMETRIC_CLASSES`: discs that differ only by texture, a star, a cross). Colours are
random for every part. Each image shows its object as an object-centred photograph would:
near the image centre (within +-8% of the side), at a random size (large: :class:`Layout`),
rotation (within +-30 degrees for upright classes) and mirror image, over a cluttered background with
2-4 fragments of other objects (whole objects seen through a window, so their parts appear
loose in the background), sometimes an occluder over the object's rim, a lighting gradient
and pixel noise. :data:`HELDOUT_CLASSES` (9 other combinations of the same families) are never
used for training; they serve the feature-generalization experiment.

Per image the generator records the object's visible pixels (``masks``) and, for the faces
(:data:`FACE_CLASSES`), the ``(y, x)`` image coordinates of the left eye, right eye and nose
(``parts``) with the part radius in pixels (``part_radius``). Coordinates are in pixels with
pixel ``(row, col)`` centred at ``y = row, x = col``, in the course's one order ``(y, x)``.
"Left eye" is the eye on the image's left side: faces are never mirrored and turn by at most
30 degrees, so its ``x`` is always the smaller one. Occluders never reach the eyes or the nose.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from ..progress import progress_bar
from .core import CacheError, ImageTensorDataset, cache_dir, load_array_cache, save_array_cache

__all__ = [
    "EMBEDDED_CLASSES",
    "HELDOUT_CLASSES",
    "FACE_CLASSES",
    "SYMMETRIC_CLASSES",
    "FAMILIES",
    "class_family",
    "CLASS_SETS",
    "SPLITS",
    "DEFAULT_NUM_IMAGES",
    "GENERATOR_VERSION",
    "IMAGE_SIZE",
    "STATS_IMAGES",
    "Layout",
    "DEFAULT_LAYOUT",
    "generate_shapes",
    "split_seed",
    "load_embedded",
]

#: Splits of :func:`load_embedded`; each draws from its own seed (see :func:`split_seed`).
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Images per split when ``num_images`` is not given.
DEFAULT_NUM_IMAGES: dict[str, dict[str, int]] = {
    "main": {"train": 22_800, "val": 2_280, "test": 2_280},  # 600 / 60 / 60 per class
    "heldout": {"train": 2_250, "val": 900, "test": 900},  # 250 / 100 / 100 per class
}
#: Side of the images that :func:`load_embedded` serves.
IMAGE_SIZE = 128
#: Bumped whenever the pictures or their annotations change, so old caches are never reused
#: (5: ``parts`` in (y, x) order; the pictures are those of 4. 6: objects near the centre at
#: larger sizes, the layout of design F in :mod:`course_utils.designs`. 7: design H, the layout of
#: 5 (objects anywhere, sizes 0.20-0.36) drawn at 128 pixels instead of 64; ``Layout((0.26, 0.46),
#: 0.08)`` with ``image_size=64`` draws the pictures of 6).
GENERATOR_VERSION = 7
#: The normalization statistics come from this many first images of the training split.
STATS_IMAGES = 500

_EDGE_PX = 1.0  # width of the antialiased edge in pixels
# Every object lies within _OBJECT_REACH local units of its centre (the farthest part is a long
# ear: centre 0.77 away, half-axis 0.42), and every layer's SDF is exact except ellipses', whose
# approximate distance widens the antialiased edge by up to their aspect ratio (at most 3.3):
# outside that disc an object's alpha is exactly 0, so it is drawn in its bounding square only.
_OBJECT_REACH = 1.2
_OBJECT_EDGE_PX = 3.3 * _EDGE_PX / 2
_MAX_TILT_DEG = 30.0  # upright classes turn by at most this
_FRAGMENTS = (2, 5)  # fragments of other objects per image: integers in [low, high)
_FRAGMENT_SCALE = (0.2, 0.33)
_FRAGMENT_WINDOW = (0.5, 0.9)  # radius (local units) of the window through which a fragment shows
_FRAGMENT_STRENGTH = (0.75, 1.0)  # opacity
_PARALLEL_MIN_IMAGES = 2_000  # below this, one process is faster than starting workers


#: The embedded dataset's families of classes (:func:`class_family`), in the order of its classes.
FAMILIES = ("face", "vehicle", "house", "plant", "symmetric")
_VEHICLES = ("car", "truck", "bus")


def class_family(class_name: str) -> str:
    """The family of an embedded class (main or held-out), one of :data:`FAMILIES`.

    Faces, vehicles and houses are named ``family:parts`` (``face:round-eyes/none-ears/button``,
    ``truck:two-wheels/round-windows``, ``house:flat-roof/square-windows``); the rotation-symmetric
    shapes are :data:`SYMMETRIC_CLASSES`; every other name
    (``daisy``, ``conifer``, ``mushroom`` ...) is a plant.
    """
    if not isinstance(class_name, str) or not class_name:
        raise ValueError(f"class_name must be a non-empty string, got {class_name!r}")
    if class_name in SYMMETRIC_CLASSES:
        return "symmetric"
    if ":" not in class_name:
        return "plant"
    prefix = class_name.split(":", 1)[0]
    if prefix in _VEHICLES:
        return "vehicle"
    if prefix in ("face", "house"):
        return prefix
    raise ValueError(f"unknown family {prefix!r} of class {class_name!r}; the embedded families are {FAMILIES}")


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


def _sd_ellipse(
    u: np.ndarray, v: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> np.ndarray:
    """Approximate distance to an ellipse with half-axes ``a`` (along ``angle``) and ``b``."""
    x, y = _rotate(u - cx, v - cy, angle)
    return (np.hypot(x / a, y / b) - 1.0) * min(a, b)


def _sd_box(
    u: np.ndarray,
    v: np.ndarray,
    cx: float,
    cy: float,
    half_width: float,
    half_height: float,
    angle: float = 0.0,
    corner: float = 0.0,
) -> np.ndarray:
    """Box with half sizes ``half_width`` x ``half_height`` and rounded corners of radius ``corner``."""
    x, y = _rotate(u - cx, v - cy, angle)
    qx = np.abs(x) - half_width + corner
    qy = np.abs(y) - half_height + corner
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - corner


def _sd_segment(
    u: np.ndarray, v: np.ndarray, start: tuple[float, float], stop: tuple[float, float], radius: float
) -> np.ndarray:
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
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _luma(colour: np.ndarray) -> float:
    return float(colour @ _LUMA_WEIGHTS)


def _colour(
    rng: np.random.Generator,
    hue: tuple[float, float] = (0.0, 1.0),
    saturation: tuple[float, float] = (0.35, 0.95),
    value: tuple[float, float] = (0.1, 1.0),
    far_from: np.ndarray | None = None,
    contrast: float = 0.3,
) -> np.ndarray:
    """A random RGB colour in [0, 1], optionally with luma at least ``contrast`` from ``far_from``.

    Rejection-samples (deterministically from ``rng``); when no draw qualifies the value
    range is widened to reach black or white, whichever is farther from ``far_from``.
    """
    far_luma = None if far_from is None else _luma(far_from)
    for attempt in range(40):
        low, high = value if attempt < 20 else (0.0, 1.0)
        rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*saturation), rng.uniform(low, high)))
        if far_luma is None or abs(_luma(rgb) - far_luma) >= contrast:
            return rgb
    assert far_luma is not None  # without it the first draw qualifies
    return np.zeros(3) if far_luma > 0.5 else np.ones(3)


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


@dataclass(frozen=True)
class Layout:
    """Where and how large each picture's object is drawn: one axis of a dataset design.

    Attributes:
        object_scale: ``(low, high)`` of the object's size, drawn uniformly: pixels per local
            unit as a fraction of the image side (an object reaches about one unit from its centre).
        centre_spread: ``None`` puts the object anywhere it fits in the image; a fraction ``s``
            draws its centre within ``+-s`` image sides of the image centre (then kept where it fits),
            as in object-centred photographs.
    """

    object_scale: tuple[float, float] = (0.2, 0.36)
    centre_spread: float | None = None

    def __post_init__(self) -> None:
        low, high = (float(value) for value in self.object_scale)
        if not 0 < low <= high <= 1:
            raise ValueError(f"object_scale must be (low, high) with 0 < low <= high <= 1, got {self.object_scale}")
        object.__setattr__(self, "object_scale", (low, high))
        if self.centre_spread is not None and not 0 <= self.centre_spread <= 0.5:
            raise ValueError(f"centre_spread must be None or in [0, 0.5], got {self.centre_spread}")

    def tag(self) -> str:
        """A short name for cache files: ``""`` for :data:`DEFAULT_LAYOUT`, else a digest of the fields."""
        if self == DEFAULT_LAYOUT:
            return ""
        text = repr((self.object_scale, self.centre_spread)).encode()
        return "-layout" + hashlib.sha256(text).hexdigest()[:8]


#: The shipped dataset's layout.
DEFAULT_LAYOUT = Layout()


def _textured_disc(pen: _Pen, texture: Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]) -> _Drawing:
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


def _rings(x: np.ndarray, y: np.ndarray, period: float, edge: float) -> np.ndarray:
    return _stripes(np.hypot(x, y) - period / 4, y, period, edge)


def _star_outline(points: int, inner: float, outer: float = 1.0, turn: float = 0.0) -> np.ndarray:
    angles = turn - np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _draw_symmetric(pen: _Pen, kind: str) -> _Drawing:
    """Rotation-symmetric classes: textured discs, a star, a cross."""
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    if kind in ("striped_disc", "checkered_disc", "dotted_disc", "ringed_disc"):
        texture = {"striped_disc": _stripes, "checkered_disc": _checks, "dotted_disc": _dots, "ringed_disc": _rings}[
            kind
        ]
        return _textured_disc(pen, texture)
    if kind == "star":
        return _Drawing([(_sd_polygon(u, v, _star_outline(5, rng.uniform(0.38, 0.5))), ink)])
    if kind == "cross":
        arm = rng.uniform(0.25, 0.33)
        return _Drawing(
            [
                (
                    np.minimum(
                        _sd_box(u, v, 0.0, 0.0, 0.95, arm, corner=0.05), _sd_box(u, v, 0.0, 0.0, arm, 0.95, corner=0.05)
                    ),
                    ink,
                )
            ]
        )
    raise ValueError(kind)


# Faces: a head whose eyes, ears and snout vary; the class is the combination.
_EYES = ("round", "square", "slit")
_EARS = ("none", "pointy", "round", "long")
_SNOUTS = ("button", "triangle", "muzzle")


def _eye(u: np.ndarray, v: np.ndarray, kind: str, x: float, y: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """``(eye, pupil)`` SDFs of one eye centred at ``(x, y)``."""
    if kind == "round":
        return _sd_circle(u, v, x, y, size), _sd_circle(u, v, x, y, 0.45 * size)
    if kind == "square":
        return _sd_box(u, v, x, y, 0.9 * size, 0.9 * size), _sd_box(u, v, x, y, 0.35 * size, 0.35 * size)
    return _sd_ellipse(u, v, x, y, 1.35 * size, 0.42 * size), _sd_circle(u, v, x, y, 0.3 * size)


def _draw_face(pen: _Pen, eyes: str, ears: str, snout: str) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    head_a, head_b = rng.uniform(0.6, 0.7), rng.uniform(0.66, 0.76)
    head_y = 0.15
    head = _sd_ellipse(u, v, 0.0, head_y, head_a, head_b)
    ear_colour = ink if rng.random() < 0.5 else _colour(rng, far_from=pen.ground, contrast=0.25)
    ear = np.full(u.shape, np.inf)
    for side in (-1.0, 1.0):
        if ears == "pointy":
            ear = np.minimum(
                ear,
                _sd_polygon(
                    u, v, np.array([[side * 0.18, -0.38], [side * 0.62, -0.2], [side * rng.uniform(0.45, 0.6), -0.95]])
                ),
            )
        elif ears == "round":
            ear = np.minimum(ear, _sd_circle(u, v, side * 0.5, -0.42, rng.uniform(0.2, 0.26)))
        elif ears == "long":
            ear = np.minimum(ear, _sd_ellipse(u, v, side * 0.28, -0.72, 0.13, rng.uniform(0.36, 0.42), side * 0.15))
    eye_x, eye_y = rng.uniform(0.24, 0.3), head_y + rng.uniform(-0.3, -0.2)
    eye_size = rng.uniform(0.12, 0.15)
    eye_colour = _colour(rng, far_from=ink, contrast=0.4)
    pupil_colour = _colour(rng, far_from=eye_colour, contrast=0.35)
    left, left_pupil = _eye(u, v, eyes, -eye_x, eye_y, eye_size)
    right, right_pupil = _eye(u, v, eyes, eye_x, eye_y, eye_size)
    nose_y = head_y + rng.uniform(0.05, 0.15)
    nose_size = rng.uniform(0.1, 0.13)
    nose_colour = _colour(rng, far_from=ink, contrast=0.35)
    layers = [
        (ear, ear_colour),
        (head, ink),
        (np.minimum(left, right), eye_colour),
        (np.minimum(left_pupil, right_pupil), pupil_colour),
    ]
    if snout == "muzzle":
        muzzle_colour = _colour(rng, far_from=ink, contrast=0.3)
        layers.append((_sd_ellipse(u, v, 0.0, nose_y + 0.12, 0.3, 0.2), muzzle_colour))
        nose_colour = _colour(rng, far_from=muzzle_colour, contrast=0.35)
        layers.append((_sd_ellipse(u, v, 0.0, nose_y + 0.02, 0.12, 0.07), nose_colour))
    elif snout == "triangle":
        layers.append(
            (
                _sd_polygon(
                    u,
                    v,
                    np.array(
                        [
                            [0.0, nose_y + 1.1 * nose_size],
                            [nose_size * 1.2, nose_y - 0.7 * nose_size],
                            [-nose_size * 1.2, nose_y - 0.7 * nose_size],
                        ]
                    ),
                ),
                nose_colour,
            )
        )
    else:
        layers.append((_sd_circle(u, v, 0.0, nose_y, nose_size), nose_colour))
    parts = np.array([[-eye_x, eye_y], [eye_x, eye_y], [0.0, nose_y]])
    return _Drawing(layers, parts, max(1.35 * eye_size if eyes == "slit" else eye_size, nose_size * 1.2))


# Vehicles: a body (car, truck, bus) with wheels and windows that vary.
def _draw_vehicle(pen: _Pen, body: str, wheels: str, windows: str) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    bottom = 0.3
    if body == "car":
        hull = np.minimum(
            _sd_box(u, v, 0.0, 0.12, 0.95, 0.2, corner=0.08),
            _sd_polygon(u, v, np.array([[-0.55, -0.05], [0.45, -0.05], [0.25, -0.42], [-0.4, -0.42]])),
        )
        slots = [(-0.3, -0.22), (0.15, -0.22)]
    elif body == "truck":
        hull = np.minimum(_sd_box(u, v, 0.62, 0.0, 0.3, 0.32, corner=0.06), _sd_box(u, v, -0.3, -0.12, 0.62, 0.45))
        slots = [(0.66, -0.12)]
    else:  # bus
        hull = _sd_box(u, v, 0.0, -0.05, 0.98, 0.38, corner=0.1)
        slots = [(-0.66, -0.18), (-0.22, -0.18), (0.22, -0.18), (0.66, -0.18)]
    window_colour = _colour(rng, saturation=(0.0, 0.4), far_from=ink, contrast=0.35)
    size = rng.uniform(0.11, 0.14)
    glass = np.full(u.shape, np.inf)
    for x, y in slots:
        glass = np.minimum(
            glass, _sd_circle(u, v, x, y, size) if windows == "round" else _sd_box(u, v, x, y, 1.1 * size, 0.9 * size)
        )
    radius = rng.uniform(0.17, 0.21)
    axles = (-0.6, 0.6) if wheels == "two" else (-0.68, -0.25, 0.62)
    tyre = np.minimum.reduce([_sd_circle(u, v, x, bottom + 0.05, radius) for x in axles])
    hub = np.minimum.reduce([_sd_circle(u, v, x, bottom + 0.05, 0.4 * radius) for x in axles])
    tyre_colour = _colour(rng, saturation=(0.0, 0.3), value=(0.0, 0.3), far_from=ink, contrast=0.3)
    hub_colour = _colour(rng, saturation=(0.0, 0.3), far_from=tyre_colour, contrast=0.4)
    return _Drawing([(hull, ink), (glass, window_colour), (tyre, tyre_colour), (hub, hub_colour)])


# Buildings: walls with a roof, windows and an optional chimney.
def _draw_building(pen: _Pen, roof: str, windows: str, chimney: bool) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    width, top = rng.uniform(0.55, 0.68), rng.uniform(-0.2, -0.1)
    walls = _sd_box(u, v, 0.0, (top + 0.85) / 2, width, (0.85 - top) / 2)
    roof_colour = _colour(rng, far_from=ink, contrast=0.25)
    if roof == "gable":
        cover = _sd_polygon(
            u, v, np.array([[-width - 0.15, top + 0.02], [width + 0.15, top + 0.02], [0.0, rng.uniform(-0.95, -0.8)]])
        )
    elif roof == "dome":
        cover = np.maximum(_sd_circle(u, v, 0.0, top, width * 0.95), v - top)
    else:  # flat roof with a parapet
        cover = _sd_box(u, v, 0.0, top - 0.06, width + 0.08, 0.08)
    layers = [(walls, ink), (cover, roof_colour)]
    if chimney:
        layers.insert(0, (_sd_box(u, v, -0.35 * width, top - 0.35, 0.09, 0.3), roof_colour))
    window_colour = _colour(rng, saturation=(0.0, 0.4), far_from=ink, contrast=0.4)
    size = rng.uniform(0.1, 0.13)
    glass = np.full(u.shape, np.inf)
    for x in (-0.45 * width, 0.45 * width):
        for y in (top + 0.25, top + 0.6):
            glass = np.minimum(
                glass, _sd_circle(u, v, x, y, size) if windows == "round" else _sd_box(u, v, x, y, size, size)
            )
    door = _sd_box(u, v, 0.0, 0.67, 0.13, 0.18)
    layers += [(glass, window_colour), (door, _colour(rng, far_from=ink, contrast=0.35))]
    return _Drawing(layers)


# Plants: flowers and trees.
def _draw_plant(pen: _Pen, kind: str) -> _Drawing:
    u, v, rng, ink = pen.u, pen.v, pen.rng, pen.ink
    stem_colour = _colour(rng, hue=(0.05, 0.42), far_from=pen.ground, contrast=0.25)
    if kind in ("daisy", "aster"):
        count, ring, head_y = int(rng.integers(6, 9)), rng.uniform(0.33, 0.4), -0.3
        turn = rng.uniform(0.0, 2 * np.pi)
        if kind == "daisy":
            petals = np.minimum.reduce(
                [
                    _sd_circle(u, v, ring * np.cos(a), head_y + ring * np.sin(a), 0.2)
                    for a in turn + 2 * np.pi * np.arange(count) / count
                ]
            )
        else:
            petals = _sd_polygon(u, v, _star_outline(count, 0.3, 0.62, turn) + np.array([0.0, head_y]))
        centre = _sd_circle(u, v, 0.0, head_y, rng.uniform(0.15, 0.2))
        stem = np.minimum(
            _sd_segment(u, v, (0.0, head_y), (0.0, 1.0), 0.06), _sd_ellipse(u, v, 0.2, 0.55, 0.22, 0.09, -0.5)
        )
        return _Drawing([(stem, stem_colour), (petals, ink), (centre, _colour(rng, far_from=ink, contrast=0.35))])
    if kind == "tulip":
        cup = np.maximum(
            _sd_circle(u, v, 0.0, -0.35, 0.42),
            -_sd_polygon(u, v, np.array([[-0.45, -0.9], [-0.22, -0.45], [0.0, -0.9], [0.22, -0.45], [0.45, -0.9]])),
        )
        stem = np.minimum(_sd_segment(u, v, (0.0, -0.2), (0.0, 1.0), 0.06), _sd_ellipse(u, v, -0.2, 0.5, 0.3, 0.1, 0.7))
        return _Drawing([(stem, stem_colour), (cup, ink)])
    trunk = _sd_box(u, v, 0.0, 0.6, rng.uniform(0.1, 0.14), 0.4)
    if kind == "broadleaf":
        crown = np.minimum.reduce(
            [
                _sd_circle(u, v, -0.32, -0.15, 0.4),
                _sd_circle(u, v, 0.32, -0.15, 0.4),
                _sd_circle(u, v, 0.0, -0.5, 0.45),
                _sd_circle(u, v, 0.0, -0.1, 0.4),
            ]
        )
    elif kind == "conifer":
        crown = np.minimum.reduce(
            [
                _sd_polygon(u, v, np.array([[-w, y], [w, y], [0.0, y - 0.65]]))
                for w, y in ((0.75, 0.25), (0.6, -0.15), (0.45, -0.5))
            ]
        )
    elif kind == "cactus":
        trunk = _sd_box(u, v, 0.0, 0.05, 0.17, 0.9, corner=0.15)
        crown = np.minimum(
            _sd_segment(u, v, (-0.55, -0.45), (-0.55, 0.1), 0.12), _sd_segment(u, v, (0.55, -0.6), (0.55, -0.05), 0.12)
        )
        crown = np.minimum(
            crown,
            np.minimum(
                _sd_segment(u, v, (-0.55, 0.1), (0.0, 0.1), 0.12), _sd_segment(u, v, (0.55, -0.05), (0.0, -0.05), 0.12)
            ),
        )
        return _Drawing([(np.minimum(trunk, crown), ink)])
    else:  # mushroom
        trunk = _sd_box(u, v, 0.0, 0.4, 0.18, 0.5, corner=0.08)
        crown = np.maximum(_sd_ellipse(u, v, 0.0, -0.05, 0.95, 0.7), v + 0.05)
        spots = np.minimum.reduce([_sd_circle(u, v, x, y, 0.1) for x, y in ((-0.45, -0.25), (0.0, -0.5), (0.4, -0.2))])
        return _Drawing([(trunk, stem_colour), (crown, ink), (spots, _colour(rng, far_from=ink, contrast=0.35))])
    return _Drawing([(trunk, stem_colour), (crown, ink)])


def _faces(combinations: list[tuple[int, int, int]]) -> dict[str, tuple[Callable[..., _Drawing], _Style]]:
    return {
        f"face:{_EYES[e]}-eyes/{_EARS[r]}-ears/{_SNOUTS[s]}": (
            partial(_draw_face, eyes=_EYES[e], ears=_EARS[r], snout=_SNOUTS[s]),
            _Style(_MAX_TILT_DEG, False, 1.0),
        )
        for e, r, s in combinations
    }


_UPRIGHT = _Style(_MAX_TILT_DEG, True, 1.0)
_ANY_ANGLE = _Style(180.0, False, 1.0)
_RENDERERS: dict[str, tuple[Callable[..., _Drawing], _Style]] = {
    # 12 faces: every (eyes, ears) pair once, the snout decided by both
    **_faces([(e, r, (e + r) % 3) for e in range(3) for r in range(4)]),
    **{
        f"{body}:{wheels}-wheels/{windows}-windows": (
            partial(_draw_vehicle, body=body, wheels=wheels, windows=windows),
            _UPRIGHT,
        )
        for body, wheels, windows in (
            ("car", "two", "square"),
            ("car", "three", "round"),
            ("truck", "two", "round"),
            ("truck", "three", "square"),
            ("bus", "two", "round"),
            ("bus", "three", "square"),
            ("car", "two", "round"),
            ("bus", "three", "round"),
        )
    },
    **{
        f"house:{roof}-roof/{windows}-windows" + ("/chimney" if chimney else ""): (
            partial(_draw_building, roof=roof, windows=windows, chimney=chimney),
            _UPRIGHT,
        )
        for roof, windows, chimney in (
            ("gable", "square", True),
            ("gable", "round", False),
            ("flat", "square", False),
            ("flat", "round", True),
            ("dome", "square", False),
            ("dome", "round", True),
        )
    },
    **{
        kind: (partial(_draw_plant, kind=kind), _UPRIGHT)
        for kind in ("daisy", "aster", "tulip", "broadleaf", "conifer", "cactus")
    },
    **{
        kind: (partial(_draw_symmetric, kind=kind), _ANY_ANGLE)
        for kind in ("striped_disc", "checkered_disc", "dotted_disc", "ringed_disc", "star", "cross")
    },
}
_HELDOUT_RENDERERS: dict[str, tuple[Callable[..., _Drawing], _Style]] = {
    **_faces([(0, 0, 1), (1, 1, 0), (2, 2, 2), (2, 3, 0)]),
    "truck:three-wheels/round-windows": (
        partial(_draw_vehicle, body="truck", wheels="three", windows="round"),
        _UPRIGHT,
    ),
    "car:three-wheels/square-windows": (partial(_draw_vehicle, body="car", wheels="three", windows="square"), _UPRIGHT),
    "house:gable-roof/round-windows/chimney": (
        partial(_draw_building, roof="gable", windows="round", chimney=True),
        _UPRIGHT,
    ),
    "house:dome-roof/square-windows/chimney": (
        partial(_draw_building, roof="dome", windows="square", chimney=True),
        _UPRIGHT,
    ),
    "mushroom": (partial(_draw_plant, kind="mushroom"), _UPRIGHT),
}
_RENDERERS.update(_HELDOUT_RENDERERS)

EMBEDDED_CLASSES: tuple[str, ...] = tuple(name for name in _RENDERERS if name not in _HELDOUT_RENDERERS)
HELDOUT_CLASSES: tuple[str, ...] = tuple(_HELDOUT_RENDERERS)
#: Classes drawn at any angle (rotation-symmetric); all others are drawn upright (within +-30 degrees).
SYMMETRIC_CLASSES: frozenset[str] = frozenset(
    name for name, (_, style) in _RENDERERS.items() if style.max_rotation_deg >= 180
)
#: The face family: heads whose eyes, ears and snout differ; their images record eye and nose positions.
FACE_CLASSES: tuple[str, ...] = tuple(name for name in EMBEDDED_CLASSES if name.startswith("face:"))
#: Class sets by name; ``classes=`` arguments take these keys.
CLASS_SETS: dict[str, tuple[str, ...]] = {"main": EMBEDDED_CLASSES, "heldout": HELDOUT_CLASSES}


# --------------------------------------------------------------------------------------
# Whole images
# --------------------------------------------------------------------------------------
def _blend(canvas: np.ndarray, alpha: np.ndarray, paint: _Paint) -> None:
    """``canvas += alpha * (paint - canvas)`` with ``canvas`` (3, H, W) channels first (long inner
    loops), ``alpha`` (H, W) and ``paint`` a colour (3,) or a colour field (H, W, 3)."""
    paint = paint[:, None, None] if paint.ndim == 1 else paint.transpose(2, 0, 1)
    canvas += alpha * (paint - canvas)


def _paint(canvas: np.ndarray, sdf_pixels: np.ndarray, paint: _Paint) -> np.ndarray:
    """Blend ``paint`` over ``canvas`` (3, H, W) where the pixel-unit SDF is inside; returns alpha."""
    alpha = np.clip(0.5 - sdf_pixels / _EDGE_PX, 0.0, 1.0)
    _blend(canvas, alpha, paint)
    return alpha


def _square_near(size: int, centre: tuple[float, float], reach: float) -> tuple[slice, slice] | None:
    """(rows, columns) slices of the pixels a shape within ``reach`` pixels of ``centre = (x, y)``
    can touch with its antialiased edge, or ``None`` when that square misses the image."""
    cx, cy = centre
    reach += _EDGE_PX + 1
    top, bottom = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, size)
    left, right = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, size)
    if top >= bottom or left >= right:
        return None
    return slice(top, bottom), slice(left, right)


def _paint_near(
    canvas: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    centre: tuple[float, float],
    reach: float,
    sdf: Callable[[np.ndarray, np.ndarray], np.ndarray],
    paint: _Paint,
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """:func:`_paint` a shape that lies within ``reach`` pixels of ``centre = (x, y)``, evaluating
    ``sdf(x, y)`` only on the square its antialiased edge can touch (its alpha is exactly 0
    elsewhere, so the pixels are those of painting everywhere). Returns ``(box, alpha)`` with
    ``box`` the (rows, columns) slices, or ``None`` when the square misses the image."""
    box = _square_near(canvas.shape[-1], centre, reach)
    if box is None:
        return None
    return box, _paint(canvas[:, box[0], box[1]], sdf(x[box], y[box]), paint)


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Cluttered background (3, H, W) in [0, 1]: gradient, low-contrast shapes and lines."""
    base = _colour(rng, saturation=(0.05, 0.5), value=(0.3, 0.75))
    slope = rng.uniform(-0.12, 0.12, size=(2, 3)) / size
    channels = (slice(None), None, None)
    canvas = base[channels] + (x - size / 2) * slope[0][channels] + (y - size / 2) * slope[1][channels]
    for _ in range(int(rng.integers(5, 10))):
        shade = np.clip(base + rng.uniform(-0.1, 0.1, size=3), 0.0, 1.0)
        cx, cy = rng.uniform(-0.1, 1.1, size=2) * size
        kind = rng.integers(3)
        if kind == 0:
            radius = rng.uniform(0.03, 0.16) * size
            _paint_near(canvas, x, y, (cx, cy), radius, partial(_sd_circle, cx=cx, cy=cy, radius=radius), shade)
        elif kind == 1:
            half_width, half_height = rng.uniform(0.03, 0.15, size=2) * size
            box_shape = partial(
                _sd_box, cx=cx, cy=cy, half_width=half_width, half_height=half_height, angle=rng.uniform(0, np.pi)
            )
            _paint_near(canvas, x, y, (cx, cy), np.hypot(half_width, half_height), box_shape, shade)
        else:
            angle, length = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6) * size
            offset = np.array([np.cos(angle), np.sin(angle)]) * length / 2
            radius = rng.uniform(0.4, 1.6)
            start, stop = (cx - offset[0], cy - offset[1]), (cx + offset[0], cy + offset[1])
            line = partial(_sd_segment, start=start, stop=stop, radius=radius)
            _paint_near(canvas, x, y, (cx, cy), length / 2 + radius, line, shade)
    return canvas


def _pose(
    rng: np.random.Generator,
    style: _Style,
    size: int,
    scale: float,
    centre: np.ndarray | None = None,
    centre_spread: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """``(centre (x, y), angle, mirror)`` of an object of ``style``.

    ``centre=None``: random where the object fits in the image (in the middle when it is too
    large to fit anywhere), or within ``+-centre_spread`` image sides of the image centre when
    that is given, then moved inwards where it fits (see :class:`Layout`).
    """
    if centre is None:
        margin = 0.85 * style.extent * scale
        middle = (size - 1) / 2
        if centre_spread is None:
            centre = rng.uniform(min(margin, middle), max(middle, size - 1 - margin), size=2)
        else:
            centre = middle + rng.uniform(-centre_spread, centre_spread, size=2) * size
            centre = np.clip(centre, margin, max(margin, size - 1 - margin))
    angle = np.deg2rad(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    mirror = -1.0 if style.mirror and rng.random() < 0.5 else 1.0
    return centre, angle, mirror


def _local(
    x: np.ndarray, y: np.ndarray, centre: np.ndarray, scale: float, angle: float, mirror: float
) -> tuple[np.ndarray, np.ndarray]:
    """Local coordinates ``(u, v)`` of the pixels ``(x, y)`` for an object posed by :func:`_pose`."""
    u, v = _rotate((x - centre[0]) / scale, (y - centre[1]) / scale, angle)
    return mirror * u, v


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(y, x)`` pixel coordinates (size, size) float32."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _draw(
    rng: np.random.Generator, class_name: str, u: np.ndarray, v: np.ndarray, ground: np.ndarray, scale: float
) -> _Drawing:
    draw, _ = _RENDERERS[class_name]
    return draw(_Pen(u, v, rng, _colour(rng, far_from=ground, contrast=0.3), ground, scale))


def _render_image(
    rng: np.random.Generator, class_name: str, size: int, names: tuple[str, ...], layout: Layout = DEFAULT_LAYOUT
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One picture: ``(image (3, H, W) uint8, mask (H, W) bool, parts (3, 2), part_radius)``.

    Background clutter, then 2-4 fragments of other objects of the class set ``names`` (each a
    whole object seen through a random window), the object, sometimes an occluder in front
    of it, and a lighting gradient with pixel noise over everything.
    """
    y, x = _pixel_grid(size)
    canvas = _background(rng, x, y, size)
    for _ in range(int(rng.integers(*_FRAGMENTS))):
        other = names[int(rng.integers(len(names)))]
        scale = rng.uniform(*_FRAGMENT_SCALE) * size
        centre, angle, mirror = _pose(rng, _RENDERERS[other][1], size, scale, rng.uniform(-0.1, 1.1, size=2) * size)
        ground = canvas[:, int(np.clip(centre[1], 0, size - 1)), int(np.clip(centre[0], 0, size - 1))].copy()
        window_u, window_v = rng.uniform(-0.6, 0.6, size=2)
        window_radius = rng.uniform(*_FRAGMENT_WINDOW)
        strength = rng.uniform(*_FRAGMENT_STRENGTH)
        # Only the window's bounding box can change: draw the fragment there (at least one pixel).
        offset = np.array(_rotate(mirror * window_u, window_v, -angle)) * scale
        low = np.clip(np.floor(centre + offset - window_radius * scale) - 2, 0, size - 1).astype(int)
        high = np.clip(np.ceil(centre + offset + window_radius * scale) + 3, low + 1, size).astype(int)
        box = (slice(low[1], high[1]), slice(low[0], high[0]))
        u, v = _local(x[box], y[box], centre, scale, angle, mirror)
        region = canvas[:, box[0], box[1]]
        window = _sd_circle(u, v, window_u, window_v, window_radius)
        for sdf, paint in _draw(rng, other, u, v, ground, scale).layers:
            alpha = np.clip(0.5 - np.maximum(sdf, window) * scale / _EDGE_PX, 0.0, 1.0) * strength
            _blend(region, alpha, paint)
    style = _RENDERERS[class_name][1]
    scale = rng.uniform(*layout.object_scale) * size  # pixels per local unit
    centre, angle, mirror = _pose(rng, style, size, scale, centre_spread=layout.centre_spread)
    ground = canvas[:, int(centre[1]), int(centre[0])].copy()
    reach = _square_near(size, (centre[0], centre[1]), _OBJECT_REACH * scale + _OBJECT_EDGE_PX)
    assert reach is not None  # the centre lies in the image
    rows, columns = reach
    u, v = _local(x[rows, columns], y[rows, columns], centre, scale, angle, mirror)
    drawing = _draw(rng, class_name, u, v, ground, scale)
    coverage = np.zeros((size, size))  # float64, as the alphas: the mask's threshold sees them unrounded
    covered = coverage[rows, columns]  # a view
    for sdf, paint in drawing.layers:
        np.maximum(covered, _paint(canvas[:, rows, columns], sdf * scale, paint), out=covered)
    if rng.random() < 0.35:  # an occluder over the object's rim
        direction = rng.uniform(0.0, 2 * np.pi)
        where = centre + 0.95 * scale * np.array([np.cos(direction), np.sin(direction)])
        shade = _colour(rng, saturation=(0.05, 0.5), value=(0.2, 0.8))
        radius = rng.uniform(0.3, 0.45) * scale
        occluder = partial(_sd_circle, cx=where[0], cy=where[1], radius=radius)
        painted = _paint_near(canvas, x, y, (where[0], where[1]), radius, occluder, shade)
        if painted is not None:
            box, blocked = painted
            coverage[box] *= 1.0 - blocked
    gain = 1.0 + (x - size / 2) * rng.uniform(-0.5, 0.5) / size + (y - size / 2) * rng.uniform(-0.5, 0.5) / size
    canvas = canvas * (gain * rng.uniform(0.75, 1.2)) + rng.uniform(-0.08, 0.08)
    canvas += rng.normal(0.0, rng.uniform(0.01, 0.04), size=(size, size, 3)).transpose(2, 0, 1)  # drawn (H, W, 3)
    image = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    parts = np.full((3, 2), np.nan, dtype=np.float32)
    if drawing.parts is not None:  # local (u, v) -> image (y, x); faces are never mirrored
        c, s = np.cos(angle), np.sin(angle)
        pu, pv = drawing.parts[:, 0] * mirror, drawing.parts[:, 1]
        parts[:, 0] = centre[1] + scale * (s * pu + c * pv)
        parts[:, 1] = centre[0] + scale * (c * pu - s * pv)
    return image, coverage >= 0.5, parts, drawing.part_radius * scale


def _class_set(classes: str) -> tuple[int, tuple[str, ...]]:
    if classes not in CLASS_SETS:
        raise ValueError(f"unknown classes {classes!r}: use one of {', '.join(map(repr, CLASS_SETS))}")
    return list(CLASS_SETS).index(classes), CLASS_SETS[classes]


def _labels(start: int, stop: int, seed: int, set_index: int, num_classes: int) -> np.ndarray:
    """Labels of images ``start..stop-1``: each block of ``num_classes`` images is a permutation."""
    blocks = range(start // num_classes, (stop - 1) // num_classes + 1)
    labels = np.concatenate(
        [
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(set_index, 0, block))).permutation(
                num_classes
            )
            for block in blocks
        ]
    )
    offset = blocks[0] * num_classes
    return labels[start - offset : stop - offset]


def _render_range(
    start: int, stop: int, seed: int, classes: str, size: int, layout: Layout = DEFAULT_LAYOUT
) -> dict[str, np.ndarray]:
    """Images ``start..stop-1`` of the stream ``(seed, classes)`` (what one worker does)."""
    set_index, names = _class_set(classes)
    labels = _labels(start, stop, seed, set_index, len(names))
    count = stop - start
    out: dict[str, np.ndarray] = {
        "images": np.empty((count, 3, size, size), dtype=np.uint8),
        "labels": labels.astype(np.int64),
        "parts": np.empty((count, 3, 2), dtype=np.float32),
        "part_radius": np.empty(count, dtype=np.float32),
        "masks": np.empty((count, size, size), dtype=bool),
    }
    for row, (index, label) in enumerate(zip(range(start, stop), labels)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(set_index, 1, index)))
        out["images"][row], out["masks"][row], out["parts"][row], out["part_radius"][row] = _render_image(
            rng, names[label], size, names, layout
        )
    return out


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts instantly on Linux (as torch's DataLoader does); elsewhere the default.
    return multiprocessing.get_context("fork" if sys.platform == "linux" else None)


def _check_image_size(image_size: object) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}")


def generate_shapes(
    num_images: int,
    seed: int,
    classes: str = "main",
    image_size: int = IMAGE_SIZE,
    progress: bool = True,
    workers: int | None = None,
    layout: Layout = DEFAULT_LAYOUT,
) -> dict[str, np.ndarray]:
    """Generate ``num_images`` pictures of the class set ``classes`` ("main" or "heldout").

    Image ``i`` depends only on ``(seed, classes, i, image_size)``; every block of
    ``len(classes)`` consecutive images holds each class once.

    Args:
        image_size: side of the square images in pixels (objects scale with it).
        progress: show a progress bar.
        workers: processes to use; ``None`` uses up to 2 for 2,000 images or more.
        layout: where and how large objects are drawn (:class:`Layout`; default the shipped one).

    Returns:
        ``images`` (N, 3, H, W) uint8, ``labels`` (N,) int64, ``parts`` (N, 3, 2) float32
        (y, x) of left eye, right eye, nose for faces and NaN otherwise, ``part_radius``
        (N,) float32 eye/nose radius in pixels for faces (NaN otherwise), ``masks``
        (N, H, W) bool, the object's pixels.
    """
    _class_set(classes)
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_image_size(image_size)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if num_images >= _PARALLEL_MIN_IMAGES else 1
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (1 runs in this process), got {workers!r}")
    chunk = max(1, min(250, -(-num_images // workers)))
    bounds = [(start, min(start + chunk, num_images)) for start in range(0, num_images, chunk)]
    if not isinstance(layout, Layout):
        raise TypeError(f"layout must be a course_utils.data.embedded.Layout, got {type(layout).__name__}")
    arguments = (int(seed), classes, int(image_size), layout)
    results: dict[int, dict[str, np.ndarray]] = {}
    with progress_bar(total=num_images, desc=f"generating {classes} shapes", unit="img", progress=progress) as bar:
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


def load_embedded(
    split: str = "train",
    root: str | Path | None = None,
    seed: int = 0,
    classes: str = "main",
    num_images: int | None = None,
    progress: bool = True,
    layout: Layout = DEFAULT_LAYOUT,
    image_size: int = IMAGE_SIZE,
) -> ImageTensorDataset:
    """The embedded dataset's ``split``, generated once and then read from a hashed cache.

    Args:
        split: "train", "val" or "test"; each has its own seed derived from ``seed``.
        root: cache folder (default :func:`~course_utils.data.core.cache_dir`: ``$COURSE_CACHE_DIR``
            or ``data/cache``).
        classes: "main" (:data:`EMBEDDED_CLASSES`) or "heldout" (:data:`HELDOUT_CLASSES`).
        num_images: images in the split (default :data:`DEFAULT_NUM_IMAGES`).
        layout: where and how large objects are drawn (:class:`Layout`); other layouts than the
            shipped one are the dataset designs of :mod:`course_utils.designs`.
        image_size: side ``S`` of the images in pixels (default :data:`IMAGE_SIZE`; objects scale
            with it); other sizes are for the dataset designs too, and get their own cache file.

    Returns:
        An :class:`ImageTensorDataset` (images (N, 3, S, S) uint8) whose mean/std are those
        of the first :data:`STATS_IMAGES` training images of the same seed and classes, with
        extras ``parts`` (N, 3, 2), ``part_radius`` (N,) and ``masks`` (N, S, S) bool.
        A corrupt, partial or mismatching cache file is reported with a warning and rebuilt.
    """
    seed_of_split = split_seed(seed, split)  # checks split and seed
    _, names = _class_set(classes)
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES[classes][split]
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer or None for the default, got {num_images!r}")
    _check_image_size(image_size)
    path = cache_dir(root) / (
        f"embedded-{classes}-{split}-seed{seed}-n{num_images}-v{GENERATOR_VERSION}{layout.tag()}"
        f"{'' if image_size == IMAGE_SIZE else f'-size{image_size}'}.npz"
    )
    info = {
        "dataset": "embedded",
        "classes": classes,
        "class_names": list(names),
        "split": split,
        "seed": int(seed),
        "num_images": int(num_images),
        "image_size": int(image_size),
        "generator_version": GENERATOR_VERSION,
        "stats_images": STATS_IMAGES,
        **({} if layout == DEFAULT_LAYOUT else {"layout": dataclasses.asdict(layout)}),
    }
    arrays = None
    if path.exists() or path.with_suffix(".json").exists():
        try:
            arrays = load_array_cache(path, info)
        except CacheError as error:
            warnings.warn(f"{error}; regenerating it", RuntimeWarning, stacklevel=2)
    if arrays is None:
        arrays = generate_shapes(num_images, seed_of_split, classes, image_size, progress, layout=layout)
        if split == "train" and num_images >= STATS_IMAGES:
            sample = arrays["images"][:STATS_IMAGES]  # identical to a fresh STATS_IMAGES run
        else:
            sample = generate_shapes(
                STATS_IMAGES, split_seed(seed, "train"), classes, image_size, progress, layout=layout
            )["images"]
        arrays["mean"], arrays["std"] = _channel_statistics(sample)
        save_array_cache(path, arrays, info)
    return ImageTensorDataset(
        torch.from_numpy(arrays["images"]),
        torch.from_numpy(arrays["labels"]),
        names,
        arrays["mean"].tolist(),
        arrays["std"].tolist(),
        {key: torch.from_numpy(arrays[key]) for key in ("parts", "part_radius", "masks")},
    )

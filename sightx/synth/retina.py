"""The healthy retina: pigmented background, illumination, optic disc, macula and vessel tree.

Drawn at a working resolution (a few megapixels at most) in float32 on [0, 1]; the camera
stage upsamples to the sensor size, which is how real fundus optics look anyway (soft at
full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# A segment of vessel: x0, y0, x1, y1, width (px), kind (0 = vein, 1 = artery, 2 = new vessel).
Segment = tuple[float, float, float, float, float, int]


@dataclass(frozen=True)
class Anatomy:
    """Where things are, in working-resolution pixels."""

    cx: float
    cy: float
    r: float
    side: int  # +1 right eye (disc on the image's right), -1 left eye
    disc: tuple[float, float]
    disc_r: float
    macula: tuple[float, float]


def place_anatomy(rng: np.random.Generator, cx: float, cy: float, r: float, right_eye: bool) -> Anatomy:
    """Disc nasal of the macula, as in a macula-centred 45-degree field."""
    side = 1 if right_eye else -1
    disc = (cx + side * r * rng.uniform(0.36, 0.48), cy + r * rng.uniform(-0.08, 0.04))
    macula = (cx - side * r * rng.uniform(0.0, 0.1), cy + r * rng.uniform(-0.02, 0.06))
    return Anatomy(cx, cy, r, side, disc, r * rng.uniform(0.11, 0.14), macula)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid, bicubically enlarged."""
    gh, gw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _radial(h: int, w: int, x: float, y: float, scale: float) -> np.ndarray:
    """Distance from (x, y) in units of `scale`, as float32."""
    yy, xx = np.ogrid[:h, :w]
    return np.sqrt(((xx - x) / scale) ** 2 + ((yy - y) / scale) ** 2, dtype=np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(x * 0.5)


def background(rng: np.random.Generator, h: int, w: int, a: Anatomy) -> np.ndarray:
    """Orange-red fundus with choroidal mottling, radial falloff, disc and macula."""
    # Pigmentation: from light orange to dark brown-red fundi.
    pigment = rng.uniform(0.0, 1.0)
    base = np.array([0.86 - 0.25 * pigment, 0.38 - 0.16 * pigment, 0.16 - 0.07 * pigment], np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    mottle = smooth_noise(rng, h, w, 60) * 0.03 + smooth_noise(rng, h, w, 8) * 0.04
    img *= (1.0 + mottle)[..., None]

    # Macula: darker, slightly browner, with a darker fovea.
    dm = _radial(h, w, *a.macula, a.r * 0.2)
    macula = np.exp(-(dm**2)) * 0.28 + np.exp(-((dm * 4) ** 2)) * 0.12
    img *= (1.0 - macula)[..., None] * np.array([1.0, 0.92, 0.95], np.float32) + macula[..., None] * 0.55

    # Optic disc: bright yellow-pink rim with a paler cup, soft edge.
    dd = _radial(h, w, *a.disc, a.disc_r)
    disc = _sigmoid((1.0 - dd) * 9.0)
    cup_ratio = rng.uniform(0.3, 0.6)
    cup = _sigmoid((cup_ratio - dd) * 14.0)
    disc_colour = np.array([0.98, 0.72, 0.45], np.float32)
    img += disc[..., None] * (disc_colour - img) * 0.85
    img += cup[..., None] * (np.array([1.0, 0.93, 0.78], np.float32) - img) * 0.6
    # A faint peripapillary glow helps the disc read as a disc at thumbnail size.
    img *= (1.0 + 0.15 * np.exp(-((dd / 2.2) ** 2)))[..., None]

    # Illumination: bright centre, falling off towards the rim.
    rho = _radial(h, w, a.cx + rng.normal(0, 0.05) * a.r, a.cy + rng.normal(0, 0.05) * a.r, a.r)
    img *= (1.08 - 0.55 * np.clip(rho, 0, 1.2) ** 2.4)[..., None]
    return img


def vessel_tree(rng: np.random.Generator, a: Anatomy) -> list[Segment]:
    """Arcades leave the disc, arch around the macula and branch dichotomously towards the rim."""
    segments: list[Segment] = []
    temporal = -a.side  # the macula side
    trunks = [
        # (start angle in image coords, curvature towards temporal side, kind)
        (-np.pi / 2 - temporal * 0.35, 1, 0),
        (-np.pi / 2 - temporal * 0.25, 1, 1),
        (np.pi / 2 + temporal * 0.35, -1, 0),
        (np.pi / 2 + temporal * 0.25, -1, 1),
        (-np.pi / 2 + temporal * 0.9, 0, 0),
        (np.pi / 2 - temporal * 0.9, 0, 1),
        (np.pi * (0 if temporal < 0 else 1) - 0.3, 0, 1),
        (np.pi * (0 if temporal < 0 else 1) + 0.3, 0, 0),
    ]
    for angle, bend, kind in trunks:
        width = a.r * (0.016 if kind == 0 else 0.012) * rng.uniform(0.85, 1.1)
        # Temporal arcades bend back round the macula; nasal ones run straighter.
        curvature = bend * temporal * -0.045 if bend else rng.normal(0, 0.01)
        x0 = a.disc[0] + np.cos(angle) * a.disc_r * 0.3
        y0 = a.disc[1] + np.sin(angle) * a.disc_r * 0.3
        _grow(rng, a, segments, x0, y0, angle + rng.normal(0, 0.08), width, curvature, kind, depth=0)
    return segments


def _grow(
    rng: np.random.Generator,
    a: Anatomy,
    out: list[Segment],
    x: float,
    y: float,
    angle: float,
    width: float,
    curvature: float,
    kind: int,
    depth: int,
) -> None:
    """Grow one vessel as a wiggly random walk, spawning thinner branches as it goes."""
    step = a.r * 0.02
    min_width = max(0.6, a.r * 0.0025)
    next_branch = rng.uniform(4, 9)
    for i in range(400):
        angle += curvature + rng.normal(0, 0.07)
        nx, ny = x + np.cos(angle) * step, y + np.sin(angle) * step
        out.append((x, y, nx, ny, width, kind))
        x, y = nx, ny
        width *= 0.994
        if (x - a.cx) ** 2 + (y - a.cy) ** 2 > (a.r * 1.02) ** 2 or width < min_width:
            return
        # Keep clear of the fovea: bend away when heading into it.
        if (x - a.macula[0]) ** 2 + (y - a.macula[1]) ** 2 < (a.r * 0.18) ** 2:
            away = np.arctan2(y - a.macula[1], x - a.macula[0])
            angle += 0.25 * np.sin(away - angle)
        if i >= next_branch and depth < 5:
            next_branch = i + rng.uniform(5, 12) * (1 + depth * 0.3)
            sign = 1 if rng.random() < 0.5 else -1
            child = width * rng.uniform(0.55, 0.75)
            _grow(rng, a, out, x, y, angle + sign * rng.uniform(0.5, 1.1), child, curvature * 0.5, kind, depth + 1)
            width *= rng.uniform(0.82, 0.92)


def draw_segments(h: int, w: int, segments: list[Segment], kinds: tuple[int, ...], contrast_width: float) -> np.ndarray:
    """Rasterise the segments of the given kinds into a coverage map in [0, 1]."""
    canvas = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1, width, kind in segments:
        if kind in kinds:
            thickness = max(1, int(round(width)))
            # Thin vessels are less contrasted than the arcades, as on a real fundus.
            shade = int(255 * min(1.0, width / contrast_width) ** 0.6)
            cv2.line(canvas, (int(x0 * 4), int(y0 * 4)), (int(x1 * 4), int(y1 * 4)), shade, thickness, cv2.LINE_AA, 2)
    return canvas.astype(np.float32) / 255.0

"""Grade-dependent DR lesions, following the international clinical DR severity scale.

0 none; 1 microaneurysms only; 2 more microaneurysms, haemorrhages, hard exudates;
3 many haemorrhages in all quadrants, venous beading, cotton-wool spots;
4 proliferative: neovascularisation and/or pre-retinal haemorrhage.
Sizes are in units of the field radius so they scale with the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from sightx.synth.retina import Anatomy, Segment

# (microaneurysms, haemorrhages, exudate clusters, cotton-wool spots, new-vessel tufts) ranges per grade.
_COUNTS: dict[int, tuple[tuple[int, int], ...]] = {
    0: ((0, 0), (0, 0), (0, 0), (0, 0), (0, 0)),
    1: ((2, 8), (0, 0), (0, 0), (0, 0), (0, 0)),
    2: ((8, 25), (2, 8), (0, 3), (0, 1), (0, 0)),
    3: ((15, 40), (15, 35), (1, 4), (2, 6), (0, 0)),
    4: ((10, 35), (6, 20), (0, 3), (0, 4), (1, 3)),
}


@dataclass
class LesionMaps:
    """Coverage maps in [0, 1] at working resolution, plus new vessels and beads for the vessel layer."""

    red: np.ndarray
    yellow: np.ndarray
    white: np.ndarray
    new_vessels: list[Segment] = field(default_factory=list)
    beads: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, radius
    counts: dict[str, int] = field(default_factory=dict)


def _points(rng: np.random.Generator, a: Anatomy, n: int, pole: float) -> np.ndarray:
    """n points in the field, a share `pole` of them clustered round the posterior pole."""
    near = rng.random(n) < pole
    rad = np.where(near, np.abs(rng.normal(0, 0.28, n)), np.sqrt(rng.random(n)) * 0.88) * a.r
    ang = rng.uniform(0, 2 * np.pi, n)
    cx = np.where(near, (a.macula[0] + a.disc[0]) / 2, a.cx)
    cy = np.where(near, (a.macula[1] + a.disc[1]) / 2, a.cy)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    # Nothing sits on the optic disc.
    on_disc = np.hypot(pts[:, 0] - a.disc[0], pts[:, 1] - a.disc[1]) < a.disc_r * 1.2
    pts[on_disc, 0] -= a.side * a.disc_r * 2.5
    return pts


def _ellipse(canvas: np.ndarray, x: float, y: float, ax: float, ay: float, angle: float, value: int) -> None:
    """Anti-aliased filled ellipse with sub-pixel position (4x fixed point)."""
    centre = (int(x * 4), int(y * 4))
    axes = (max(1, int(ax * 4)), max(1, int(ay * 4)))
    cv2.ellipse(canvas, centre, axes, angle, 0, 360, value, -1, cv2.LINE_AA, 2)


def draw_lesions(rng: np.random.Generator, grade: int, a: Anatomy, h: int, w: int, veins: list[Segment]) -> LesionMaps:
    """Draw the lesions of one eye of the given grade."""
    (ma, hae, exu, cws, nv) = (int(rng.integers(lo, hi + 1)) for lo, hi in _COUNTS[grade])
    red = np.zeros((h, w), np.uint8)
    yellow = np.zeros((h, w), np.uint8)
    white = np.zeros((h, w), np.uint8)
    r = a.r

    for x, y in _points(rng, a, ma, pole=0.7):  # microaneurysms: tiny round red dots
        s = r * rng.uniform(0.0035, 0.007)
        _ellipse(red, x, y, s, s, 0, int(rng.integers(190, 256)))
    for x, y in _points(rng, a, hae, pole=0.4 if grade < 3 else 0.1):
        if rng.random() < 0.35:  # flame haemorrhage along the nerve fibres (radial to the disc)
            angle = np.degrees(np.arctan2(y - a.disc[1], x - a.disc[0]))
            _ellipse(red, x, y, r * rng.uniform(0.025, 0.05), r * rng.uniform(0.007, 0.013), angle, 200)
        else:  # dot-blot haemorrhage: a few overlapping blobs
            for _ in range(int(rng.integers(1, 4))):
                s = r * rng.uniform(0.008, 0.025)
                ox, oy = rng.normal(0, s * 0.6, 2)
                _ellipse(red, x + ox, y + oy, s, s * rng.uniform(0.6, 1), rng.uniform(0, 180), 235)
    for x, y in _points(rng, a, exu, pole=0.85):  # hard exudates: clusters / rings of waxy yellow flecks
        spread = r * rng.uniform(0.03, 0.1)
        k = int(rng.integers(5, 30))
        ang = rng.uniform(0, 2 * np.pi, k)
        rad = spread * (0.6 + 0.4 * rng.random(k))
        for px, py in zip(x + rad * np.cos(ang), y + rad * np.sin(ang)):
            s = r * rng.uniform(0.003, 0.01)
            _ellipse(yellow, px, py, s, s * rng.uniform(0.5, 1), rng.uniform(0, 180), int(rng.integers(170, 256)))
    for x, y in _points(rng, a, cws, pole=0.6):  # cotton-wool spots: pale fluffy patches
        _ellipse(white, x, y, r * rng.uniform(0.03, 0.06), r * rng.uniform(0.02, 0.04), rng.uniform(0, 180), 200)

    maps = LesionMaps(red=red.astype(np.float32) / 255, yellow=yellow.astype(np.float32) / 255, white=white.astype(np.float32) / 255)
    maps.counts = {"microaneurysms": ma, "haemorrhages": hae, "exudate_clusters": exu, "cotton_wool": cws}
    if cws:
        maps.white = cv2.GaussianBlur(maps.white, (0, 0), r * 0.012)
    if grade >= 3 and (grade == 3 or rng.random() < 0.5):
        maps.beads = _venous_beading(rng, veins)
        maps.counts["beading"] = 1
    if grade == 4:
        for _ in range(nv):
            maps.new_vessels += _neovascular_tuft(rng, a)
        maps.counts["new_vessel_tufts"] = nv
        if rng.random() < 0.4:  # pre-retinal (boat-shaped) haemorrhage: flat top from settled blood
            x, y = _points(rng, a, 1, pole=0.5)[0]
            boat = np.zeros((h, w), np.uint8)
            _ellipse(boat, x, y, r * rng.uniform(0.08, 0.15), r * rng.uniform(0.06, 0.1), 0, 255)
            boat[: max(0, int(y - r * 0.02))] = 0
            maps.red = np.maximum(maps.red, boat.astype(np.float32) / 255)
            maps.counts["preretinal"] = 1
    return maps


def _venous_beading(rng: np.random.Generator, veins: list[Segment]) -> list[tuple[float, float, float]]:
    """Sausage-like calibre changes along a stretch of the larger veins."""
    big = [s for s in veins if s[5] == 0 and s[4] > 2.5]
    if not big:
        return []
    beads = []
    start = int(rng.integers(0, len(big)))
    for x0, y0, _, _, width, _ in big[start : start + int(rng.integers(30, 80)) : 2]:
        beads.append((x0, y0, width * rng.uniform(0.9, 1.4)))
    return beads


def _neovascular_tuft(rng: np.random.Generator, a: Anatomy) -> list[Segment]:
    """Fine, chaotic, looping new vessels at the disc or along an arcade."""
    if rng.random() < 0.5:
        x, y = a.disc[0] + rng.normal(0, a.disc_r), a.disc[1] + rng.normal(0, a.disc_r)
    else:
        ang = rng.uniform(0, 2 * np.pi)
        x, y = a.disc[0] - a.side * a.r * 0.4 + np.cos(ang) * a.r * 0.3, a.disc[1] + np.sin(ang) * a.r * 0.35
    segs: list[Segment] = []
    step = a.r * 0.008
    for _ in range(int(rng.integers(8, 18))):
        px, py, ang = x, y, rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 25))):
            ang += rng.normal(0, 0.6)
            nx, ny = px + np.cos(ang) * step, py + np.sin(ang) * step
            segs.append((px, py, nx, ny, a.r * rng.uniform(0.0025, 0.004), 2))
            px, py = nx, ny
    return segs

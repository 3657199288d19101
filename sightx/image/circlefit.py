"""Circle fitting to rim points: closed-form least squares (Kasa) and a deterministic RANSAC.

Pure functions on (N, 2) float arrays of x, y points; used by `sightx.image.fov`.
"""

from __future__ import annotations

import math

import numpy as np

INLIER_TOL = 1.5  # rim-point residual (working pixels) that still counts as on the circle
MIN_POINTS = 24
_RANSAC_ITERS = 128
_RANSAC_VOTERS = 200
_QUICK_INLIER_FRAC = 0.8  # a fit to all rim points holding this share of them is taken without RANSAC
# RANSAC triples as fractions of the rim-point list: a fixed table, so a fit never depends on
# what a worker processed before (as a shared generator's state would).
_TRIPLES = np.random.default_rng(0).random((_RANSAC_ITERS, 3))


def robust_circle(pts: np.ndarray, near: tuple[float, float, float] | None = None) -> tuple[tuple[float, float, float], float] | None:
    """RANSAC over 3-point circles (or start from `near`, a circle (cx, cy, r) known to be close),
    then Kasa refits on the inliers; returns the circle and the inlier share.

    Triples and voters come from fixed tables, so the same points always give the same circle.
    """
    if near is not None:
        return refit(pts, residuals(pts, *near) < 2 * INLIER_TOL)
    # Most rims are clean: a fit to every point that then holds most of them needs no search.
    quick = refit(pts, np.ones(len(pts), bool))
    if quick is not None and quick[1] >= _QUICK_INLIER_FRAC:
        return quick
    n = len(pts)
    cand = circles_through(pts[(_TRIPLES * n).astype(np.intp)])
    # Votes from a fixed-size, evenly spread sample of the rim: as decisive as all points, a fraction of the cost.
    voters = pts[np.linspace(0, n - 1, min(n, _RANSAC_VOTERS)).astype(np.intp)].astype(np.float32)
    c32 = cand.astype(np.float32)
    dx = voters[None, :, 0] - c32[:, :1]
    dy = voters[None, :, 1] - c32[:, 1:2]
    d2 = dx * dx + dy * dy
    # |distance - r| < tol, compared squared: no square roots over the whole table.
    lo = np.maximum(c32[:, 2:] - INLIER_TOL, 0) ** 2
    votes = ((d2 > lo) & (d2 < (c32[:, 2:] + INLIER_TOL) ** 2)).sum(axis=1)  # NaN (collinear triple) never votes
    best = cand[int(np.argmax(votes))]
    return refit(pts, residuals(pts, *best) < INLIER_TOL)


def residuals(pts: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """|distance from the centre - r| of each point."""
    d = pts - (cx, cy)
    return np.abs(np.sqrt(np.einsum("ij,ij->i", d, d)) - r)


def refit(pts: np.ndarray, inliers: np.ndarray) -> tuple[tuple[float, float, float], float] | None:
    """Kasa fits on the inliers, re-selecting inliers after each until they settle (3 at most);
    returns the circle and inlier share."""
    for _ in range(3):
        k = np.count_nonzero(inliers)
        if k < MIN_POINTS:
            return None
        fit = kasa(pts if k == len(pts) else pts[inliers])
        if fit is None:
            return None
        cx, cy, r = fit
        again = residuals(pts, cx, cy, r) < INLIER_TOL
        settled = bool((again == inliers).all())
        inliers = again
        if settled:
            break
    return (cx, cy, r), np.count_nonzero(inliers) / len(pts)


def circles_through(tri: np.ndarray) -> np.ndarray:
    """(cx, cy, r) of the circle through each point triple; NaN for collinear ones."""
    (x1, y1), (x2, y2), (x3, y3) = (tri[:, i, :].T for i in range(3))
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)
    s1, s2, s3 = x1**2 + y1**2, x2**2 + y2**2, x3**2 + y3**2
    cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
    cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
    return np.column_stack([cx, cy, np.hypot(x1 - cx, y1 - cy)])


def kasa(pts: np.ndarray) -> tuple[float, float, float] | None:
    """Algebraic least-squares circle (Kasa) in closed form, on centred points for conditioning:
    x^2 + y^2 = p x + q y + c, where centring decouples c from the 2x2 system for p, q.
    All the sums come from one 2x3 matrix product. None for collinear points."""
    n = len(pts)
    mx, my = (pts.sum(axis=0) / n).tolist()
    c = pts - (mx, my)
    z = np.einsum("ij,ij->i", c, c)
    (sxx, sxy, sxz), (_, syy, syz) = (c.T @ np.column_stack((c, z))).tolist()
    det = sxx * syy - sxy * sxy
    if det <= 1e-9 * max(sxx * syy, 1.0):
        return None
    cx = (sxz * syy - syz * sxy) / det / 2
    cy = (syz * sxx - sxz * sxy) / det / 2
    return cx + mx, cy + my, math.sqrt(max((sxx + syy) / n + cx * cx + cy * cy, 0.0))

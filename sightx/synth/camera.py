"""How a fundus camera frames and exposes a shot: resolution, field of view, exposure, defects.

Everything here is drawn from one seeded generator per image, so a plan is reproducible, and
kept as plain data (`Shot`) so it pickles to worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# The resolutions seen in EyePACS (Kaggle 2015) and roughly how common each is.
CAMERA_MIX: tuple[tuple[tuple[int, int], float], ...] = (
    ((4752, 3168), 0.22),
    ((3888, 2592), 0.30),
    ((3456, 2304), 0.10),
    ((2592, 1944), 0.16),
    ((2592, 1728), 0.12),
    ((2048, 1536), 0.05),
    ((1024, 683), 0.05),
)


# Why a grader could not read a shot: under-exposed, out of focus, behind a milky veil (cataract,
# a dirty lens), or framed so that most of the field lies outside the photo.
UNGRADABLE_KINDS = ("dark", "blur", "haze", "off-frame")

# Gradable shots from real cameras that a field-of-view search must still frame: a very dark
# exposure (the circle a few grey levels above black, dark periphery), strong vignetting, and a
# field that fills the frame (a square sensor: only the corners dark, or no dark edge at all).
QUIRKS = ("very-dark", "vignetted", "fills-frame")


@dataclass(frozen=True)
class Shot:
    """One photograph's framing and exposure; geometry is in full-resolution pixels."""

    width: int
    height: int
    cx: float
    cy: float
    radius: float
    notch_angle: float | None  # radians; None = no rim notch
    gain: float  # overall exposure multiplier
    gamma: float
    cast: tuple[float, float, float]  # per-channel colour multipliers
    blur_sigma: float  # in units of the radius (0 = sharp)
    haze: float  # 0..1 milky veil (cataract, out of focus)
    rim_glare: float  # 0..1 bright crescent at the rim
    background: float  # black level outside the field
    noise: float  # sensor noise sigma (grey levels)
    ungradable: str | None  # one of UNGRADABLE_KINDS, or None
    vignette: float = 0.0  # share of the brightness lost at the rim (radial falloff, (d / r)^2)
    quirk: str | None = None  # one of QUIRKS, or None


def draw_shot(rng: np.random.Generator, size: tuple[int, int] | None, ungradable_rate: float, quirk_rate: float = 0.0) -> Shot:
    """Draw a shot: size from the camera mix (or `size`), framing, exposure and defects; with
    `quirk_rate`, that share of gradable shots also gets one of QUIRKS."""
    if size is None:
        sizes, weights = zip(*CAMERA_MIX)
        width, height = sizes[rng.choice(len(sizes), p=np.array(weights) / sum(weights))]
    else:
        width, height = size
    short = min(width, height)
    # Diameter relative to the short side: most shots show the whole circle with a thin margin;
    # about a third are cut off at top and bottom (diameter > height), as on the Canon/Topcon mix.
    cut_off = rng.random() < 0.32
    diameter = short * (rng.uniform(1.08, 1.28) if cut_off else rng.uniform(0.86, 0.99))
    radius = min(diameter / 2, width * 0.49)
    cx = width / 2 + rng.normal(0, 0.025) * width
    cy = height / 2 + rng.normal(0, 0.02) * height
    notch = float(rng.choice([0.0, np.pi / 2, -np.pi / 4])) if rng.random() < 0.3 else None

    kind = None
    if rng.random() < ungradable_rate:  # one draw picks the kind: gradable shots draw as before
        kind = UNGRADABLE_KINDS[min(int(rng.random() * len(UNGRADABLE_KINDS)), len(UNGRADABLE_KINDS) - 1)]
    if kind == "off-frame":  # the centre near a side of the frame: a third to two thirds of the field shows
        side = 1 if cx > width / 2 else -1
        cx = width / 2 + side * (width / 2 + rng.uniform(-0.25, 0.2) * radius)
    exposure = rng.random()
    if kind == "dark":
        gain = rng.uniform(0.08, 0.16)
    elif exposure < 0.12:  # under-exposed
        gain = rng.uniform(0.3, 0.6)
    elif exposure > 0.94:  # over-exposed
        gain = rng.uniform(1.35, 1.8)
    else:
        gain = float(np.exp(rng.normal(0, 0.15)))
    cast_strength = 0.12 if rng.random() < 0.2 else 0.04
    cast = tuple(float(v) for v in np.exp(rng.normal(0, cast_strength, 3)))
    if kind == "blur":
        blur, haze = rng.uniform(0.012, 0.025), rng.uniform(0.3, 0.6)
    elif kind == "haze":
        blur, haze = rng.uniform(0.006, 0.012), rng.uniform(0.85, 0.95)  # a cataract: veil and scatter
    else:
        blur = rng.uniform(0.002, 0.006) if rng.random() < 0.12 else 0.0
        haze = rng.uniform(0.05, 0.3) if rng.random() < 0.1 else 0.0
    shot = Shot(
        width=int(width),
        height=int(height),
        cx=float(cx),
        cy=float(cy),
        radius=float(radius),
        notch_angle=notch,
        gain=float(gain),
        gamma=float(rng.uniform(0.85, 1.15)),
        cast=cast,  # type: ignore[arg-type]
        blur_sigma=float(blur),
        haze=float(haze),
        rim_glare=float(rng.uniform(0.2, 0.7)) if rng.random() < 0.25 else 0.0,
        background=float(rng.uniform(0, 14)),
        noise=float(rng.uniform(1.0, 2.2)),
        ungradable=kind,
    )
    return shot if kind is not None or quirk_rate <= 0 else _quirk(rng.spawn(1)[0], shot, quirk_rate)


def _quirk(rng: np.random.Generator, shot: Shot, rate: float) -> Shot:
    """The shot with one of QUIRKS (or unchanged), drawn from a child stream of the shot's
    generator: the shot's own draws, and the image drawn after it, stay as without quirks."""
    if rng.random() >= rate:
        return shot
    quirk = QUIRKS[min(int(rng.random() * len(QUIRKS)), len(QUIRKS) - 1)]
    if quirk == "very-dark":  # the field at 6-20% of a normal exposure, darker still at the rim
        return replace(shot, quirk=quirk, gain=float(rng.uniform(0.06, 0.2)), vignette=float(rng.uniform(0.3, 0.6)))
    if quirk == "vignetted":
        return replace(shot, quirk=quirk, vignette=float(rng.uniform(0.55, 0.85)))
    # From the corners dark (0.8 of the half-diagonal) to no dark edge anywhere (over 1).
    radius = float(np.hypot(shot.width, shot.height) / 2 * rng.uniform(0.8, 1.15))
    return replace(shot, quirk=quirk, radius=radius, cx=shot.width / 2, cy=shot.height / 2)

"""Compose one synthetic fundus photograph: retina + lesions + camera, encoded as a JPEG."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from sightx.synth.camera import Shot, draw_shot
from sightx.synth.lesions import draw_lesions
from sightx.synth.retina import background, draw_segments, place_anatomy, smooth_noise, vessel_tree

# Rendering above this width adds cost, not realism: fundus optics are soft at full resolution.
WORKING_WIDTH = 1600

# How each layer tints the retina (multipliers of R, G, B where the layer covers it).
_VEIN = np.array([0.42, 0.62, 0.55], np.float32)
_ARTERY = np.array([0.2, 0.38, 0.32], np.float32)
_NEW_VESSEL = np.array([0.3, 0.55, 0.5], np.float32)
_BLOOD = np.array([0.5, 0.78, 0.72], np.float32)
_EXUDATE = np.array([1.0, 0.88, 0.42], np.float32)
_COTTON_WOOL = np.array([0.96, 0.9, 0.78], np.float32)


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to render one image in any process, byte-identically."""

    seed: tuple[int, ...]
    grade: int
    right_eye: bool
    size: tuple[int, int] | None
    quality: int
    ungradable_rate: float
    quirk_rate: float = 0.0  # share of gradable shots with a real camera's quirk (camera.QUIRKS)


@dataclass(frozen=True)
class Rendered:
    jpeg: bytes
    shot: Shot
    lesions: dict[str, int]


def render(spec: ImageSpec) -> Rendered:
    """Render and encode one fundus photograph."""
    # Lesions draw from their own stream, so one seed renders the same eye at any grade.
    eye_seed, lesion_seed = np.random.SeedSequence(spec.seed).spawn(2)
    rng = np.random.default_rng(eye_seed)
    shot = draw_shot(rng, spec.size, spec.ungradable_rate, spec.quirk_rate)
    ws = min(1.0, WORKING_WIDTH / shot.width)
    h, w = round(shot.height * ws), round(shot.width * ws)
    a = place_anatomy(rng, shot.cx * ws, shot.cy * ws, shot.radius * ws, spec.right_eye)

    img = background(rng, h, w, a)
    segments = vessel_tree(rng, a)
    lesions = draw_lesions(np.random.default_rng(lesion_seed), spec.grade, a, h, w, segments)
    veins = draw_segments(h, w, segments, (0,), a.r * 0.012)
    if lesions.beads:
        beads = np.zeros((h, w), np.uint8)
        for x, y, rad in lesions.beads:
            cv2.circle(beads, (int(x * 4), int(y * 4)), max(1, int(rad * 4)), 255, -1, cv2.LINE_AA, 2)
        veins = np.maximum(veins, beads.astype(np.float32) / 255)
    arteries = draw_segments(h, w, segments, (1,), a.r * 0.01)
    new_vessels = draw_segments(h, w, lesions.new_vessels, (2,), a.r * 0.003)
    # Nothing in the eye is in perfect focus: soften every layer a little.
    soft = max(0.6, a.r * 0.0015)
    for layer, tint, blur in (
        (veins, _VEIN, soft),
        (arteries, _ARTERY, soft),
        (new_vessels, _NEW_VESSEL, soft),
        (lesions.red, _BLOOD, soft * 2),
    ):
        img *= 1.0 - cv2.GaussianBlur(layer, (0, 0), blur)[..., None] * tint
    img += cv2.GaussianBlur(lesions.yellow, (0, 0), soft * 1.5)[..., None] * (_EXUDATE - img) * 0.85
    img += lesions.white[..., None] * (_COTTON_WOOL - img) * 0.6
    # Nerve-fibre texture: fine streaky noise the model must learn to ignore.
    img *= (1.0 + smooth_noise(rng, h, w, 220) * 0.025)[..., None]

    img = _expose(img, shot, a.r)
    img = _frame(rng, img, shot, ws)
    out: np.ndarray = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    if ws < 1.0:
        out = cv2.resize(out, (shot.width, shot.height), interpolation=cv2.INTER_LINEAR)
    out = _sensor_noise(rng, out, shot.noise)
    jpeg = simplejpeg.encode_jpeg(out, quality=spec.quality, colorspace="RGB", colorsubsampling="420")
    return Rendered(jpeg=jpeg, shot=shot, lesions=lesions.counts)


def _expose(img: np.ndarray, shot: Shot, r: float) -> np.ndarray:
    """Vignetting, focus, haze, exposure, colour cast and gamma of the camera."""
    if shot.vignette > 0:  # light falls off towards the rim, as through a small pupil
        h, w = img.shape[:2]
        cx, cy = (img.shape[1] * shot.cx / shot.width, img.shape[0] * shot.cy / shot.height)
        yy, xx = np.ogrid[:h, :w]
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2).astype(np.float32) / np.float32(r * r)
        img = img * (1 - shot.vignette * np.minimum(d2, 1))[..., None]
    if shot.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), shot.blur_sigma * r)
    if shot.haze > 0:
        img = img * (1 - shot.haze) + shot.haze * np.array([0.7, 0.55, 0.45], np.float32) * img.mean()
    img = img * (np.array(shot.cast, np.float32) * shot.gain)
    np.clip(img, 0, 1, out=img)
    return np.power(img, shot.gamma, dtype=np.float32)


def _frame(rng: np.random.Generator, img: np.ndarray, shot: Shot, ws: float) -> np.ndarray:
    """Circular field stop with a soft edge, rim glare, optional notch, noisy black surround."""
    h, w = img.shape[:2]
    cx, cy, r = shot.cx * ws, shot.cy * ws, shot.radius * ws
    yy, xx = np.ogrid[:h, :w]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2, dtype=np.float32)
    edge = max(1.0, r * 0.004)
    field = np.clip((r - dist) / edge + 0.5, 0, 1)
    if shot.notch_angle is not None:
        notch = np.zeros((h, w), np.uint8)
        nx, ny = cx + np.cos(shot.notch_angle) * r, cy - np.sin(shot.notch_angle) * r
        s = r * 0.035
        cv2.rectangle(notch, (int(nx - s), int(ny - s)), (int(nx + s), int(ny + s)), 255, -1)
        field = np.maximum(field, notch.astype(np.float32) / 255 * 0.35)
    if shot.rim_glare > 0:
        ang = np.arctan2(yy - cy, xx - cx)
        crescent = np.exp(-(((r - dist) / (r * 0.06)) ** 2)) * (0.5 + 0.5 * np.cos(ang - rng.uniform(-np.pi, np.pi)))
        img = img + (crescent * shot.rim_glare * 0.5)[..., None] * np.array([1.0, 0.8, 0.6], np.float32)
    surround = shot.background / 255.0 * (1.0 - 0.5 * np.clip(dist / max(h, w), 0, 1))
    surround = surround + smooth_noise(rng, h, w, 30) * 0.004
    return img * field[..., None] + (surround * (1 - field))[..., None]


def _sensor_noise(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    """Full-resolution grain: it is what makes real fundus JPEGs 0.5-1.3 bits per pixel."""
    k = max(1, int(round(sigma * 1.7)))
    grain = rng.integers(-k, k + 1, img.shape[:2], dtype=np.int16)
    out = img.astype(np.int16)
    out += grain[..., None]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)

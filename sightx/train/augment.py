"""Training augmentation on uint8 HWC RGB arrays, with OpenCV.

Augmentation for fundus photos: any rotation, flips, mild zoom and shift, brightness,
contrast and saturation jitter; optionally torchvision's RandAugment after them (`--randaugment N,M`).
The geometry (resize, flips, rotation, zoom, shift) is one affine warp and the colour jitter one 3x4
colour matrix, so an image costs two passes in uint8 with OpenCV, several times cheaper on a CPU core
than the same recipe with torchvision v2 transforms, which convert to float and warp each step apart
(README's performance section has the measured figures). CPU augmentation is what feeds a GPU, and
the loader's largest cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from sightx.image.fundus import resize
from sightx.inference.transforms import to_tensor

_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as torchvision's grayscale


@dataclass(frozen=True)
class Augment:
    """Random training view of a fundus image; randomness from the generator passed in, so a
    stream seeds it per (seed, epoch, rank, worker) and a run is reproducible."""

    size: int
    degrees: float = 180.0  # the fundus has no up: any rotation
    translate: float = 0.04  # fraction of the side
    scale: tuple[float, float] = (0.92, 1.08)
    stretch: tuple[float, float] = (1.0, 1.0)  # aspect ratio range (width over height), as a random resized crop's
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.15
    randaugment: tuple[int, int] | None = None  # RandAugment's (operations per image, magnitude 0-30); None: off

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        if self.size < min(img.shape[:2]):
            img = resize(img, self.size)  # shrink anti-aliased first: the warp's bilinear is not
        out = cv2.warpAffine(
            img,
            self.geometry(img.shape[:2], rng),
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        view = to_tensor(cv2.transform(out, self.colour(out, rng)))
        return view if self.randaugment is None else self.rand_augment(view, rng)

    def rand_augment(self, view: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """torchvision's RandAugment (Cubuk et al. 2020) on the uint8 view, after the warp and colour, as timm's
        training transform places it. It draws from torch's global generator, so it runs on a fork of it seeded
        from `rng`: a seeded stream repeats its views, and the caller's torch RNG state (the trainer checkpoints
        it for --resume; with --workers 0 this runs in its process) is left as it was."""
        assert self.randaugment is not None  # called only when set (__call__)
        ops, magnitude = self.randaugment
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(rng.integers(2**63)))
            return v2.RandAugment(num_ops=ops, magnitude=magnitude)(view)

    def geometry(self, shape_hw: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """2x3 matrix from input pixels to output pixels: resize to size, flips, then rotation and
        zoom about the centre and a shift (pixel-centre convention, as cv2.resize)."""
        h, w = shape_hw
        n = self.size
        resize_m = np.array([[n / w, 0, 0.5 * n / w - 0.5], [0, n / h, 0.5 * n / h - 0.5], [0, 0, 1]])
        c = (n - 1) / 2
        fx, fy = (-1 if rng.random() < 0.5 else 1), (-1 if rng.random() < 0.5 else 1)
        flip = np.array([[fx, 0, c - fx * c], [0, fy, c - fy * c], [0, 0, 1]])
        angle = rng.uniform(-self.degrees, self.degrees)
        zoom = rng.uniform(*self.scale)
        tx, ty = rng.uniform(-self.translate, self.translate, 2) * n
        a = math.radians(angle)
        cos, sin = math.cos(a), math.sin(a)
        rotate = np.array([[cos, -sin, c - cos * c + sin * c + tx], [sin, cos, c - sin * c - cos * c + ty], [0, 0, 1]])
        # Zoom (and stretch, drawn only when asked for, so the default draws stay as they were) about the centre.
        ratio = math.exp(rng.uniform(*np.log(self.stretch))) if self.stretch != (1.0, 1.0) else 1.0
        zx, zy = zoom * math.sqrt(ratio), zoom / math.sqrt(ratio)
        scale_m = np.array([[zx, 0, c - zx * c], [0, zy, c - zy * c], [0, 0, 1]])
        return (rotate @ scale_m @ flip @ resize_m)[:2]

    def colour(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """3x4 colour matrix for brightness b, contrast c, saturation s, applied in that order:
        s-blend with grey of (c-blend of b*x with its mean grey m). All linear, so one matrix:
        c*b*(s*I + (1-s)*G) x + (1-c)*b*m (grey of a grey level is itself)."""
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        mean_grey = float(np.dot(cv2.mean(img)[:3], _GREY))
        grey = np.tile(_GREY, (3, 1))
        m = c * b * (s * np.eye(3, dtype=np.float32) + (1 - s) * grey)
        return np.hstack([m, np.full((3, 1), (1 - c) * b * mean_grey, np.float32)])

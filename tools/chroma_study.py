"""How much lesion signal each --chroma setting keeps (docs evidence for the 4:2:0 default).

usage: python tools/chroma_study.py [N_EYES]

Renders N synthetic eyes twice, healthy and at grade 3-4 (the generator draws lesions from their
own random stream, so both renders are the same eye), and preprocesses both with one circle. The
lesion signal is the difference between the two normalised images before encoding; for each
chroma setting it prints the RMS error of that signal after a q95 encode and decode, per colour
channel, over the pixels where the signal exceeds 10 grey levels (and the signal's own RMS there,
for scale), plus the number of small dark
spots (red lesions) found in the green channel and the mean JPEG size.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from sightx.image import codec, fov, fundus
from sightx.synth.render import ImageSpec, render

SIZES = ((3888, 2592), (4752, 3168), (2592, 1944))
OUT = 512


def normalised(img: np.ndarray, c: fov.Circle) -> np.ndarray:
    """The preprocess path from the crop to the masked Graham image, for a given circle."""
    small, cc, frame = fundus.crop_resize(img, c, OUT)
    return fundus.apply_mask(fundus.graham(small, OUT / 2), cc, 0.92, frame, OUT / 60)


def dark_spots(healthy: np.ndarray, diseased: np.ndarray) -> int:
    """Small spots at least 24 levels darker in green than the same eye healthy."""
    spots = (healthy[..., 1].astype(np.int16) - diseased[..., 1] > 24).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(spots)
    w, h, area = stats[1:, 2], stats[1:, 3], stats[1:, 4]
    return int(((np.maximum(w, h) <= 10) & (area >= 2)).sum())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    errors: dict[str, list[np.ndarray]] = {c: [] for c in codec.CHROMA}
    spots = {c: 0 for c in (*codec.CHROMA, "unencoded")}
    sizes: dict[str, list[int]] = {c: [] for c in codec.CHROMA}
    signal: list[np.ndarray] = []
    for i in range(n):
        size, right = SIZES[i % len(SIZES)], bool(i % 2)
        decode = [codec.decode(render(ImageSpec((77, i), g, right, size, 92, 0.0)).jpeg, (569, 569))[0] for g in (0, 3 + i % 2)]
        circle = fov.find_fov(decode[0])
        if circle is None:
            continue
        healthy, diseased = (normalised(img, circle) for img in decode)
        truth = diseased.astype(np.float32) - healthy
        lesion = np.abs(truth).max(axis=2) > 10
        signal.append(np.sqrt((truth[lesion] ** 2).mean(axis=0)))
        spots["unencoded"] += dark_spots(healthy, diseased)
        for chroma in codec.CHROMA:
            jpegs = [codec.encode(x, 95, chroma) for x in (healthy, diseased)]
            back = [codec.decode(j)[0] for j in jpegs]
            errors[chroma].append(np.sqrt((((back[1].astype(np.float32) - back[0]) - truth)[lesion] ** 2).mean(axis=0)))
            spots[chroma] += dark_spots(*back)
            sizes[chroma] += [len(j) for j in jpegs]
    r, g, b = np.mean(signal, axis=0)
    print(
        f"{n} eyes, {OUT} px, Graham, q95; lesion signal RMS R / G / B {r:.1f} / {g:.1f} / {b:.1f}; "
        f"dark spots before encoding: {spots['unencoded']}"
    )
    print("| --chroma | lesion-signal RMS error R / G / B (grey levels) | dark spots found | mean JPEG KB |")
    print("|---|---|---|---|")
    for chroma in codec.CHROMA:
        r, g, b = np.mean(errors[chroma], axis=0)
        print(f"| {chroma} | {r:.1f} / {g:.1f} / {b:.1f} | {spots[chroma]} | {np.mean(sizes[chroma]) / 1e3:.0f} |")


if __name__ == "__main__":
    main()

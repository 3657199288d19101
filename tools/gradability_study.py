"""The gradability score on a seeded synthetic set and on the real photographs, for the README.

    python tools/gradability_study.py [N] [WxH]

Renders N gradable and N ungradable (N = 0: only the cost) synthetic shots (the generator's kinds: dark, blur, haze,
off-frame) at WxH (default 1536x1024), scores each through the real preprocessing path at 512 px
(centre square when no field is found, as sightx-predict does), and prints the AUC (gradable vs
not), each kind's scores and the share below the threshold; then the seven photos in
../shared/fundus-real with blurred and darkened copies; then what the score costs per photo
against the rest of preprocessing, measured in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from sightx.evaluation.metrics import roc_auc
from sightx.image import codec, gradability
from sightx.image.preprocess import PreprocessOptions, decode_bytes, preprocess_decoded
from sightx.synth.render import ImageSpec, render

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "fundus-real"
OPTS = PreprocessOptions(size=512)
T = gradability.DEFAULT_THRESHOLD


def score(jpeg: bytes) -> float:
    return preprocess_decoded(decode_bytes(jpeg, OPTS), OPTS, centre_fallback=True).info["gradability"]["score"]


def synthetic(n: int, size: tuple[int, int]) -> None:
    rows = []
    for i in range(n):
        for rate in (0.0, 1.0):
            shot = render(ImageSpec((2026, i), i % 5, i % 2 == 0, size, 90, rate))
            rows.append((shot.shot.ungradable or "good", score(shot.jpeg)))
    auc = roc_auc([k == "good" for k, _ in rows], [s for _, s in rows])
    print(f"synthetic, {n} gradable + {n} ungradable at {size[0]}x{size[1]}, seed 2026: AUC {auc:.3f}")
    print("| shots | n | score min / median / max | below threshold |")
    print("|---|---|---|---|")
    for kind in ("good", "dark", "blur", "haze", "off-frame"):
        s = np.array([v for k, v in rows if k == kind])
        if s.size:
            print(f"| {kind} | {s.size} | {s.min():.2f} / {np.median(s):.2f} / {s.max():.2f} | {np.mean(s < T):.0%} |")


def real() -> None:
    print(f"\nreal photographs ({REAL}): score of the photo, blurred (sigma 1% of the short side), darkened (x0.15)")
    print("| photo | score | blurred | darkened |")
    print("|---|---|---|---|")
    for path in sorted(REAL.glob("*.jpg")):
        data = path.read_bytes()
        small = codec.decode(data, (1024, 1024))[0]
        blurred = codec.encode(cv2.GaussianBlur(small, (0, 0), 0.01 * min(small.shape[:2])), 95)
        dark = codec.encode((small * 0.15).astype(np.uint8), 95)
        print(f"| {path.name} | {score(data):.2f} | {score(blurred):.2f} | {score(dark):.2f} |")


def cost(size: tuple[int, int], rounds: int = 15, reps: int = 5) -> None:
    """CPU time of preprocess_decoded (everything after the decode) with and without the score, same
    photos, in alternating rounds (the best round of each counts: the machine is shared)."""
    import sightx.image.preprocess as pre

    cv2.setNumThreads(1)  # as in the shard workers
    shots = [render(ImageSpec((2026, i), 0, True, size, 90, 0.0)).jpeg for i in range(4)]
    real_field, real_assess = pre._analysis_field, gradability.assess

    def one_round(opts: PreprocessOptions, decoded: list, with_score: bool) -> float:
        if not with_score:
            pre._analysis_field, gradability.assess = (lambda *a: (None, None, None)), (lambda *a, **k: {})  # type: ignore[assignment]
        try:
            start = time.process_time()  # CPU time: less disturbed than wall time by other jobs on the cores
            for _ in range(reps):
                for d in decoded:
                    preprocess_decoded(d, opts)
            return (time.process_time() - start) * 1000 / (reps * len(decoded))
        finally:
            pre._analysis_field, gradability.assess = real_field, real_assess

    for out in (256, 512):
        opts = PreprocessOptions(size=out)
        decoded = [decode_bytes(j, opts) for j in shots]
        best = {True: float("inf"), False: float("inf")}
        for _ in range(rounds):
            for flag in (True, False):
                best[flag] = min(best[flag], one_round(opts, decoded, flag))
        print(
            f"CPU cost at {out} px: preprocessing after the decode {best[False]:.2f} ms without the score, "
            f"{best[True]:.2f} ms with it (+{best[True] - best[False]:.2f} ms, x{best[True] / best[False]:.2f})"
        )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    w, h = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "1536x1024").split("x"))
    if n:
        synthetic(n, (w, h))
        if REAL.is_dir():
            real()
    cost((w, h))

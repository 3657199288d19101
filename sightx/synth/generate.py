"""Plan a synthetic EyePACS set (patients, grades, broken files) and render it in worker processes.

The plan is made in the parent from one seed; every image carries its own derived seed, so the
bytes of each file are the same whatever the worker count or scheduling.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sightx.files.atomic import atomic_write_bytes, atomic_write_text
from sightx.parallel.pool import ordered_map
from sightx.synth.render import ImageSpec, render

# Grade distribution of the Kaggle 2015 EyePACS training set.
EYEPACS_GRADES = (0.735, 0.07, 0.15, 0.025, 0.02)
# Probability that a patient's second eye copies the first eye's grade (else drawn afresh).
EYE_CONCORDANCE = 0.75
CORRUPT_KINDS = ("truncated", "zero-byte", "text", "png")


@dataclass(frozen=True)
class SynthOptions:
    n: int = 40
    seed: int = 0
    sizes: tuple[tuple[int, int], ...] | None = None  # None = the EyePACS camera mix
    quality: int = 90
    balanced: bool = False
    workers: int = 1
    corrupt: int = 0
    n_test: int = 0
    ungradable_rate: float = 0.015
    quirk_rate: float = 0.0  # share of gradable shots with a real camera's quirk (camera.QUIRKS)
    progress: bool = True


@dataclass
class SynthSummary:
    train: int = 0
    test: int = 0
    corrupt: int = 0
    grades: dict[int, int] = field(default_factory=dict)
    bytes: int = 0


@dataclass(frozen=True)
class _Job:
    path: str
    spec: ImageSpec
    corrupt: str | None = None


def _patients(rng: np.random.Generator, n_images: int, first_id: int) -> list[int]:
    """Kaggle-like patient ids: increasing, with gaps."""
    gaps = rng.integers(1, 5, (n_images + 1) // 2)
    return (first_id + np.cumsum(gaps)).tolist()


def _grades(rng: np.random.Generator, n_patients: int, balanced: bool) -> list[tuple[int, int]]:
    """(left, right) grades: a mixture of 'same as the other eye' and a fresh draw keeps the marginal."""
    p = np.full(5, 0.2) if balanced else np.array(EYEPACS_GRADES) / sum(EYEPACS_GRADES)
    first = rng.choice(5, n_patients, p=p)
    fresh = rng.choice(5, n_patients, p=p)
    same = rng.random(n_patients) < EYE_CONCORDANCE
    second = np.where(same, first, fresh)
    return list(zip(first.tolist(), second.tolist()))


def _eyes(ids: list[int], grades: list[tuple[int, int]], n: int) -> list[tuple[int, str, int]]:
    """(patient, eye, grade) for both eyes of each patient, the first n of them."""
    eyes = [(pid, eye, g) for pid, pair in zip(ids, grades) for eye, g in zip(("left", "right"), pair)]
    return eyes[:n]


def plan(out: Path, opts: SynthOptions) -> tuple[list[_Job], list[tuple[str, int]]]:
    """All jobs to run and the label rows to write, derived from the seed alone."""
    rng = np.random.default_rng(opts.seed)
    sizes = opts.sizes

    def spec(index: int, grade: int, right: bool) -> ImageSpec:
        size = None if sizes is None else sizes[int(rng.integers(len(sizes)))]
        return ImageSpec((opts.seed, index), grade, right, size, opts.quality, opts.ungradable_rate, opts.quirk_rate)

    jobs: list[_Job] = []
    labels: list[tuple[str, int]] = []
    ids = _patients(rng, opts.n, 9)
    for pid, eye, grade in _eyes(ids, _grades(rng, len(ids), opts.balanced), opts.n):
        name = f"{pid}_{eye}"
        jobs.append(_Job(str(out / "train" / f"{name}.jpeg"), spec(len(jobs), grade, eye == "right")))
        labels.append((name, grade))
    # Broken inputs are labelled too: on real archives they are failed copies of labelled photos.
    last = ids[-1] if ids else 9
    for k, kind in enumerate(CORRUPT_KINDS[i % len(CORRUPT_KINDS)] for i in range(opts.corrupt)):
        name = f"{last + 1 + k}_left"
        jobs.append(_Job(str(out / "train" / f"{name}.jpeg"), spec(len(jobs), 0, False), kind))
        labels.append((name, 0))
    test_ids = _patients(rng, opts.n_test, last + opts.corrupt + 1000)
    for pid, eye, grade in _eyes(test_ids, _grades(rng, len(test_ids), opts.balanced), opts.n_test):
        jobs.append(_Job(str(out / "test" / f"{pid}_{eye}.jpeg"), spec(len(jobs), grade, eye == "right")))
    return jobs, labels


def _corrupt_bytes(kind: str, spec: ImageSpec) -> bytes:
    """A broken input of the given kind, as real archives contain."""
    if kind == "zero-byte":
        return b""
    if kind == "text":
        return b"<html><body>404 Not Found</body></html>\n"
    small = ImageSpec(spec.seed, spec.grade, spec.right_eye, (1024, 683), spec.quality, 0.0)
    jpeg = render(small).jpeg
    if kind == "truncated":
        return jpeg[: len(jpeg) * 2 // 5]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None  # the generator's own JPEG
    return cv2.imencode(".png", image)[1].tobytes()


def _run(job: _Job) -> tuple[str, int, dict[str, float | int | str]]:
    """Render one job and write it atomically; returns the path, byte count and ground truth."""
    truth: dict[str, float | int | str]
    if job.corrupt:
        data, truth = _corrupt_bytes(job.corrupt, job.spec), {"corrupt": job.corrupt}
    else:
        r = render(job.spec)
        s = r.shot
        data = r.jpeg
        truth = {
            "width": s.width,
            "height": s.height,
            "cx": round(s.cx, 2),
            "cy": round(s.cy, 2),
            "radius": round(s.radius, 2),
            "notch": int(s.notch_angle is not None),
            "gain": round(s.gain, 3),
            "ungradable": s.ungradable or "",
            **r.lesions,
        }
    atomic_write_bytes(Path(job.path), data)
    return job.path, len(data), truth


def generate(out: Path, opts: SynthOptions) -> SynthSummary:
    """Write the Kaggle layout under `out`: train/, test/ (optional), trainLabels.csv, synthTruth.csv."""
    jobs, labels = plan(out, opts)
    (out / "train").mkdir(parents=True, exist_ok=True)
    if opts.n_test:
        (out / "test").mkdir(parents=True, exist_ok=True)
    summary = SynthSummary(corrupt=opts.corrupt, grades=dict(sorted(Counter(g for _, g in labels).items())))
    truth_rows = []
    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not opts.progress)
    for job, (path, size, truth) in zip(jobs, ordered_map(_run, jobs, opts.workers)):
        bar.update()
        summary.bytes += size
        rel = os.path.relpath(path, out)
        if rel.startswith("test"):
            summary.test += 1
        elif not job.corrupt:
            summary.train += 1
        truth_rows.append({"path": rel, "grade": job.spec.grade, **truth})
    bar.close()
    atomic_write_text(out / "trainLabels.csv", "image,level\n" + "".join(f"{n},{g}\n" for n, g in labels))
    atomic_write_text(out / "synthTruth.csv", _csv(truth_rows))
    return summary


def _csv(rows: list[dict]) -> str:
    """Rows with differing keys as one CSV (missing cells empty)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()

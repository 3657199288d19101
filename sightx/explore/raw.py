"""The numbers about a raw archive: labels against images, class balance, a gallery, image properties.

Computes only; render.py turns the results into HTML and PNG. Per-image facts come from
preprocess_bytes, the code path sightx-shard uses, so the quality numbers and rejection reasons
shown are the ones the shards will get. Bad inputs (unreadable files, missing or broken labels)
are findings for the report, not errors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sightx import codec
from sightx.errors import describe
from sightx.explore.common import EXAMPLES, ExploreError, ExploreOptions, examples, pct, thumbnail
from sightx.grades import NAMES, NUM_GRADES
from sightx.labels import LabelError, find_images, find_label_file, image_id, patient_eye, read_labels
from sightx.metrics import majority_baseline
from sightx.pool import ordered_map
from sightx.preprocess import PreprocessOptions, Rejected, preprocess_bytes

TOO_DARK = 30.0  # mean field brightness (0-255) below which a photo counts as underexposed
OVER_EXPOSED = 200.0  # ... and above which it counts as over-exposed
WORST_SHOWN = 8
# Small output, no normalisation: metrics on the photo as taken, rejections as sightx-shard makes them.
FACTS_OPTIONS = PreprocessOptions(size=256, normalize="none")
UNREADABLE = ("unreadable", "empty-file", "not-jpeg", "truncated", "decode-error")
METRICS = ("brightness", "contrast", "sharpness", "fov_fraction")
FACT_COLUMNS = ["path", "bytes", "resolution", "reason", "detail", *METRICS]


@dataclass(frozen=True)
class RawInputs:
    """What was found before any image is read: enough to refuse a folder with nothing in it."""

    path: Path
    folder: Path
    images: list[Path]
    labels: dict[str, int] | None
    label_info: dict[str, Any]


@dataclass(frozen=True)
class Gallery:
    """Thumbnails per grade, one row per grade; None marks a grade with too few readable photos."""

    tiles: list[np.ndarray | None]
    captions: list[str]
    shown: list[str]


@dataclass(frozen=True)
class RawFindings:
    """summary.json's content (less `figures`) and the pictures the report draws from."""

    summary: dict[str, Any]
    gallery: Gallery | None
    facts: pd.DataFrame  # one row of image_facts per sampled file
    worst: list[tuple[str, str, np.ndarray]]  # (path, why, thumbnail), worst first


def images_folder(path: Path) -> Path:
    """Kaggle keeps labelled photos in train/ beside test/: explore train/ when it is there."""
    return path / "train" if (path / "train").is_dir() else path


def load(path: Path, opts: ExploreOptions) -> RawInputs:
    """The images and the label file; ExploreError when there is neither."""
    folder = images_folder(path)
    images = find_images(folder)
    labels, label_info = load_labels(folder, opts.labels, images)
    if not images and labels is None:
        raise ExploreError(f"no .jpeg/.jpg files and no label file under {path}: nothing to explore")
    return RawInputs(path, folder, images, labels, label_info)


def analyse(inputs: RawInputs, opts: ExploreOptions) -> RawFindings:
    """Every number of the raw report; reads (a sample of) the images."""
    summary: dict[str, Any] = {"kind": "raw", "folder": str(inputs.path), "images_folder": str(inputs.folder), "images": len(inputs.images)}
    summary["labels"] = inputs.label_info
    labels = inputs.labels
    summary["classes"] = class_stats(labels, {image_id(p) for p in inputs.images}) if labels is not None else None
    gallery = None
    if labels is None:
        summary["gallery"] = {"shown": 0, "note": "no usable label file"}
    else:
        gallery = pick_gallery(labels, inputs.images, opts)
        summary["gallery"] = {"shown": len(gallery.shown), "images": gallery.shown}
    facts = measure(inputs.images, opts)
    props = property_stats(facts, inputs.folder, len(inputs.images))
    worst = worst_photos(facts, WORST_SHOWN)
    props["worst"] = [{"image": Path(p).relative_to(inputs.folder).as_posix(), "why": why} for p, why, _ in worst]
    summary["properties"] = props
    return RawFindings(summary, gallery, facts, worst)


def load_labels(folder: Path, override: str | None, images: list[Path]) -> tuple[dict[str, int] | None, dict[str, Any]]:
    """The label file and how it matches the images; a missing or broken file is a finding."""
    label_path = Path(override) if override else find_label_file(folder)
    info: dict[str, Any] = {"file": str(label_path) if label_path else None, "rows": 0, "error": None}
    if label_path is None:
        info["error"] = f"no trainLabels.csv in {folder} or its parent: class distribution and gallery skipped"
        return None, info
    try:
        labels = read_labels(label_path)
    except LabelError as e:
        info["error"] = f"{e}: class distribution and gallery skipped"
        return None, info
    ids = {image_id(p) for p in images}
    info["rows"] = len(labels)
    unlabelled = [p.relative_to(folder).as_posix() for p in images if image_id(p) not in labels]
    info["images_without_label"] = examples(sorted(unlabelled))
    info["labels_without_image"] = examples(sorted(set(labels) - ids))
    return labels, info


def class_stats(labels: dict[str, int], present: set[str]) -> dict[str, Any]:
    """Grade counts over the label file, per eye, eye agreement per patient, and the constant baseline."""
    grades = np.array(list(labels.values()), dtype=np.int64)
    counts = np.bincount(grades, minlength=NUM_GRADES).tolist()
    by_eye: dict[str, list[int]] = {}
    eyes: dict[str, dict[str, int]] = {}
    for image, grade in labels.items():
        patient, eye = patient_eye(image)
        by_eye.setdefault(eye or "unknown", [0] * NUM_GRADES)[grade] += 1
        if eye:
            eyes.setdefault(patient, {})[eye] = grade
    both = {p: e for p, e in sorted(eyes.items()) if len(e) == 2}
    discordant = [(p, e["left"], e["right"]) for p, e in both.items() if e["left"] != e["right"]]
    return {
        "total": len(labels),
        "counts": counts,
        "percent": [pct(c, len(labels)) for c in counts],
        "present": np.bincount([g for i, g in labels.items() if i in present], minlength=NUM_GRADES).tolist(),
        "by_eye": dict(sorted(by_eye.items())),
        "patients": len({patient_eye(i)[0] for i in labels}),
        "patients_with_both_eyes": len(both),
        "discordant_patients": len(discordant),
        "discordant_by_difference": dict(sorted(Counter(str(abs(left - right)) for _, left, right in discordant).items())),
        "discordant_examples": [{"patient": p, "left": left, "right": right} for p, left, right in discordant[:EXAMPLES]],
        "baseline": baseline(grades),
    }


def baseline(grades: np.ndarray) -> dict[str, Any]:
    """What a model that ignores the image scores: the bar every model must clear."""
    b = majority_baseline(grades)
    grade, accuracy, kappa = int(b["grade"]), float(b["accuracy"]), float(b["kappa"])
    text = (
        f"Always predicting grade {grade} ({NAMES[grade]}) is right for {accuracy:.1%} of images "
        f"and has quadratic weighted kappa {kappa:.3f}. An accuracy near {accuracy:.0%} therefore says "
        "nothing; judge models by kappa and per-grade recall."
    )
    return {"grade": grade, "accuracy": round(accuracy, 4), "kappa": round(kappa, 4), "text": text}


def pick_gallery(labels: dict[str, int], images: list[Path], opts: ExploreOptions) -> Gallery:
    """opts.per_grade seeded random readable photos per grade, blanks where a grade has too few."""
    by_grade: dict[int, list[Path]] = {}
    for p in images:
        if image_id(p) in labels:
            by_grade.setdefault(labels[image_id(p)], []).append(p)
    rng = np.random.default_rng([opts.seed, 1])
    tiles: list[np.ndarray | None] = []
    captions: list[str] = []
    shown: list[str] = []
    for grade in range(NUM_GRADES):
        picked = first_readable(by_grade.get(grade, []), rng, opts.per_grade)
        missing = opts.per_grade - len(picked)
        tiles += [img for img, _ in picked] + [None] * missing
        captions += [f"grade {grade} | {p.name}" for _, p in picked] + [f"grade {grade} | no image"] * missing
        shown += [p.name for _, p in picked]
    return Gallery(tiles, captions, shown)


def first_readable(paths: list[Path], rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, Path]]:
    """Up to n thumbnails from paths in a seeded random order, passing over unreadable files."""
    picked = []
    for i in rng.permutation(len(paths)):
        thumb = thumbnail(paths[i])
        if thumb is not None:
            picked.append((thumb, paths[i]))
        if len(picked) == n:
            break
    return picked


# --- image properties --------------------------------------------------------------


def image_facts(path: str) -> dict[str, Any]:
    """Header size, file size and quality metrics of one file; runs in a worker and never raises."""
    facts: dict[str, Any] = {"path": path, "bytes": None, "resolution": None, "reason": None, "detail": ""}
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return {**facts, "reason": "unreadable", "detail": e.strerror or str(e)}
    facts["bytes"] = len(data)
    facts["resolution"] = resolution(data)
    try:
        info = preprocess_bytes(data, FACTS_OPTIONS).info
    except Rejected as e:
        return {**facts, "reason": e.reason, "detail": e.detail}
    except Exception as e:  # one odd file must not end a scan of 100 GB
        return {**facts, "reason": "error", "detail": describe(e)}
    return {**facts, **{m: info[m] for m in METRICS}}


def resolution(data: bytes) -> str | None:
    """'WIDTHxHEIGHT' from the JPEG header alone; None when there is no readable header."""
    try:
        return "{}x{}".format(*codec.read_size(data))
    except codec.CodecError:
        return None


def sample_images(images: list[Path], n: int, seed: int) -> list[Path]:
    """A seeded random subset of n images in folder order; all of them when n is 0 or too big."""
    if n == 0 or n >= len(images):
        return images
    keep = np.sort(np.random.default_rng([seed, 2]).choice(len(images), n, replace=False))
    return [images[i] for i in keep]


def measure(images: list[Path], opts: ExploreOptions) -> pd.DataFrame:
    """image_facts of the sampled images, on opts.workers processes, in folder order."""
    from tqdm import tqdm  # the progress bar is the command's, not the library's: imported when measuring

    paths = [str(p) for p in sample_images(images, opts.sample, opts.seed)]
    facts = ordered_map(image_facts, paths, min(opts.workers, max(1, len(paths))))
    rows = list(tqdm(facts, total=len(paths), desc="explore", unit="img", disable=not opts.progress))
    return pd.DataFrame(rows, columns=FACT_COLUMNS)


def distribution(values: pd.Series) -> dict[str, float] | None:
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return None
    lo, p05, median, p95, hi = np.percentile(v, [0, 5, 50, 95, 100])
    stats = {"min": lo, "p05": p05, "median": median, "mean": v.mean(), "p95": p95, "max": hi}
    return {k: round(float(x), 3) for k, x in stats.items()}


def property_stats(df: pd.DataFrame, folder: Path, n_images: int) -> dict[str, Any]:
    """The numbers of the properties section, from one row of image_facts per sampled file."""
    ok = df[df["reason"].isna()]
    failed = df[df["reason"].notna()]
    return {
        "sampled": len(df),
        "of": n_images,
        "measured": len(ok),
        "unreadable": int(failed["reason"].isin(UNREADABLE).sum()),
        "failed_by_reason": {str(k): int(v) for k, v in sorted(Counter(failed["reason"]).items())},
        "failed": [
            {"image": Path(r.path).relative_to(folder).as_posix(), "reason": r.reason, "detail": r.detail} for r in failed.itertuples()
        ],
        "resolutions": {str(k): int(v) for k, v in df["resolution"].value_counts().items()},
        "file_bytes": distribution(df["bytes"]),
        **{m: distribution(ok[m]) for m in METRICS},
        "too_dark": int((ok["brightness"] < TOO_DARK).sum()),
        "over_exposed": int((ok["brightness"] > OVER_EXPOSED).sum()),
        "fov_cut_off": int((ok["fov_fraction"] < 1).sum()),
        "fov_cut_off_rate": round(float((ok["fov_fraction"] < 1).mean()), 4) if len(ok) else None,
    }


def worst_photos(df: pd.DataFrame, k: int) -> list[tuple[str, str, np.ndarray]]:
    """Up to k decodable photos, worst first: rejected ones, then by their lowest percentile.

    Percentiles (sharpness, closeness to the median brightness, visible field) make the metrics
    comparable without thresholds, so a photo that is bad in any one way ranks low.
    """
    rejected = df[df["reason"].notna() & ~df["reason"].isin(UNREADABLE)]
    ok = df[df["reason"].isna()]
    rank = pd.DataFrame(
        {
            "sharpness": ok["sharpness"].rank(pct=True),
            "brightness": (-(ok["brightness"] - ok["brightness"].median()).abs()).rank(pct=True),
            "fov_fraction": ok["fov_fraction"].rank(pct=True),
        }
    )
    order = rank.min(axis=1).sort_values(kind="stable").index
    metric = rank.idxmin(axis=1) if len(ok) else pd.Series(dtype=str)
    candidates = [(r.path, r.reason) for r in rejected.itertuples()]
    candidates += [(ok.at[i, "path"], f"{metric[i]} {ok.at[i, metric[i]]:.3g}") for i in order]
    worst = []
    for path, why in candidates:
        img = thumbnail(Path(path))
        if img is not None:
            worst.append((path, why, img))
        if len(worst) == k:
            break
    return worst

"""The numbers about a raw archive: labels against images, class balance, a gallery, image properties.

Computes only; render.py turns the results into HTML and PNG. Per-image facts come from
preprocess_input, the code path sightx-shard uses, so the quality numbers and rejection reasons
shown are the ones the shards will get. Bad inputs (unreadable files, missing or broken labels)
are findings for the report, not errors.

The images come from any source sightx-shard reads (a folder, a zip, split parts, the competition
zip's train images, a tar): a random-access one is read where needed, a streamed one in one pass
for the measured sample and one short pass for each set of photos shown (sightx.sources.picked).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from sightx.contracts.rejects import UNREADABLE
from sightx.errors import Rejection, describe
from sightx.evaluation.metrics import majority_baseline
from sightx.explore.common import EXAMPLES, ExploreError, ExploreOptions, class_label, examples, pct, thumb
from sightx.explore.gradability import LEAST_GRADABLE, Scored, Shown, Tally, components
from sightx.image import codec
from sightx.image.photos import preprocess_input
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.files import LabelError, label_bytes
from sightx.labels.formats import read_label_set
from sightx.labels.ids import image_id, patient_eye
from sightx.labels.kinds import GRADE, NAMES, classes
from sightx.parallel.supervise import bounded_map
from sightx.sources import Source, SourceError, find_labels, open_source
from sightx.sources.picked import Picked

TOO_DARK = 30.0  # mean field brightness (0-255) below which a photo counts as underexposed
OVER_EXPOSED = 200.0  # ... and above which it counts as over-exposed
WORST_SHOWN = 8
# Small output, no normalisation: metrics on the photo as taken, rejections as sightx-shard makes them.
FACTS_OPTIONS = PreprocessOptions(size=256, normalize="none")
METRICS = ("brightness", "contrast", "sharpness", "fov_fraction")
FACT_COLUMNS = ["path", "bytes", "resolution", "reason", "detail", *METRICS, "gradability"]
SPARE = 4  # unreadable photos a streamed source's gallery (or worst and least gradable sheets) can pass over per row
T = TypeVar("T")


@dataclass(frozen=True)
class RawInputs:
    """What was found before any image is read: enough to refuse a folder with nothing in it."""

    path: Path
    source: Source  # where the images are: path itself, its train/ folder, or the archive at path
    images: list[str]  # member names (paths inside the source), in listing order
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
    least_gradable: list[Shown]  # lowest gradability score first, with thumbnails


def images_folder(path: Path) -> Path:
    """Kaggle keeps labelled photos in train/ beside test/: explore train/ when it is there."""
    return path / "train" if (path / "train").is_dir() else path


def load(path: Path, opts: ExploreOptions) -> RawInputs:
    """The images and the label file; ExploreError when there is neither or the archive is unreadable."""
    try:
        source = open_source(images_folder(path) if path.is_dir() else path)
        images = [m.name for m in source.members()]
    except SourceError as e:
        raise ExploreError(str(e)) from None
    labels, label_info = load_labels(source, opts.labels, images)
    if not images and labels is None:
        raise ExploreError(f"no .jpeg/.jpg/.png/.tif files and no label file under {path}: nothing to explore")
    return RawInputs(path, source, images, labels, label_info)


def analyse(inputs: RawInputs, opts: ExploreOptions) -> RawFindings:
    """Every number of the raw report; reads (a sample of) the images."""
    summary: dict[str, Any] = {"kind": "raw", "folder": str(inputs.path), "images_folder": str(inputs.source), "images": len(inputs.images)}
    summary["labels"] = inputs.label_info
    labels, kind = inputs.labels, inputs.label_info["kind"]
    picked = Picked(inputs.source)
    summary["classes"] = class_stats(labels, {_id(n) for n in inputs.images}, kind) if labels is not None else None
    gallery = None
    if labels is None:
        summary["gallery"] = {"shown": 0, "note": "no usable label file"}
    else:
        gallery = pick_gallery(labels, inputs.images, picked, opts, kind)
        summary["gallery"] = {"shown": len(gallery.shown), "images": gallery.shown}
    facts = measure(inputs.images, inputs.source, opts)
    props = property_stats(facts, len(inputs.images))
    worst_names = worst_candidates(facts)
    tally = gradability_tally(facts, labels, LEAST_GRADABLE + SPARE, kind)
    least_names = tally.lowest()
    picked.fetch([p for p, _ in worst_names[: WORST_SHOWN + SPARE]] + [s.image for s in least_names])  # a stream: one short pass
    worst = [(path, why, img) for (path, why), img in first_thumbs(worst_names, WORST_SHOWN, picked, lambda c: c[0])]
    props["worst"] = [{"image": p, "why": why} for p, why, _ in worst]
    summary["properties"] = props
    least = first_thumbs(least_names, LEAST_GRADABLE, picked, lambda s: s.image)
    summary["gradability"] = {**tally.summary(s for s, _ in least), "rejected": props["sampled"] - props["measured"]}
    return RawFindings(summary, gallery, facts, worst, least)


def load_labels(source: Source, override: str | None, images: list[str]) -> tuple[dict[str, int] | None, dict[str, Any]]:
    """The label file (--labels, else inside the archive or beside it, as sightx-shard finds it) and
    how it matches the images; a missing or broken file is a finding. `kind` in the info says what
    its classes are: DR grades, or EyeQ's quality classes (sightx.labels.kinds)."""
    info: dict[str, Any] = {"file": override, "kind": GRADE, "rows": 0, "error": None}
    try:
        found = (label_bytes(Path(override)), override) if override else find_labels(source)
        if found is None:
            where = " or ".join(str(f) for f in source.label_folders()) or str(source)
            info["error"] = f"no trainLabels.csv in {where}: class distribution and gallery skipped"
            return None, info
        info["file"] = found[1]
        label_set = read_label_set(*found)
        labels, info["kind"] = label_set.grades, label_set.kind
    except (LabelError, SourceError) as e:
        info["error"] = f"{e}: class distribution and gallery skipped"
        return None, info
    ids = {_id(n) for n in images}
    info["rows"] = len(labels)
    info["images_without_label"] = examples(sorted(n for n in images if _id(n) not in labels))
    info["labels_without_image"] = examples(sorted(set(labels) - ids))
    return labels, info


def _id(name: str) -> str:
    return image_id(PurePosixPath(name))


def class_stats(labels: dict[str, int], present: set[str], kind: str = GRADE) -> dict[str, Any]:
    """Class counts (grades, or quality classes) over the label file, per eye, eye agreement per
    patient, and the constant baseline."""
    n = classes(kind)
    grades = np.array(list(labels.values()), dtype=np.int64)
    counts = np.bincount(grades, minlength=n).tolist()
    by_eye: dict[str, list[int]] = {}
    eyes: dict[str, dict[str, int]] = {}
    for image, grade in labels.items():
        patient, eye = patient_eye(image)
        by_eye.setdefault(eye or "unknown", [0] * n)[grade] += 1
        if eye:
            eyes.setdefault(patient, {})[eye] = grade
    both = {p: e for p, e in sorted(eyes.items()) if len(e) == 2}
    discordant = [(p, e["left"], e["right"]) for p, e in both.items() if e["left"] != e["right"]]
    return {
        "total": len(labels),
        "counts": counts,
        "percent": [pct(c, len(labels)) for c in counts],
        "present": np.bincount([g for i, g in labels.items() if i in present], minlength=n).tolist(),
        "by_eye": dict(sorted(by_eye.items())),
        "patients": len({patient_eye(i)[0] for i in labels}),
        "patients_with_both_eyes": len(both),
        "discordant_patients": len(discordant),
        "discordant_by_difference": dict(sorted(Counter(str(abs(left - right)) for _, left, right in discordant).items())),
        "discordant_examples": [{"patient": p, "left": left, "right": right} for p, left, right in discordant[:EXAMPLES]],
        "baseline": baseline(grades, kind),
    }


def baseline(grades: np.ndarray, kind: str = GRADE) -> dict[str, Any]:
    """What a model that ignores the image scores: the bar every model must clear."""
    b = majority_baseline(grades)
    grade, accuracy, kappa = int(b["grade"]), float(b["accuracy"]), float(b["kappa"])
    name = f"grade {grade} ({NAMES[kind][grade]})" if kind == GRADE else NAMES[kind][grade]
    text = (
        f"Always predicting {name} is right for {accuracy:.1%} of images "
        f"and has quadratic weighted kappa {kappa:.3f}. An accuracy near {accuracy:.0%} therefore says "
        "nothing; judge models by kappa and per-class recall."
    )
    return {"grade": grade, "accuracy": round(accuracy, 4), "kappa": round(kappa, 4), "text": text}


def pick_gallery(labels: dict[str, int], images: list[str], picked: Picked, opts: ExploreOptions, kind: str = GRADE) -> Gallery:
    """opts.per_grade seeded random readable photos per class, blanks where a class has too few.

    A streamed source gives only what was fetched in one pass beforehand: per grade, the first
    per_grade + SPARE photos of the same seeded order, so a few unreadable ones are passed over.
    """
    by_grade: dict[int, list[str]] = {}
    for name in images:
        if _id(name) in labels:
            by_grade.setdefault(labels[_id(name)], []).append(name)
    rng = np.random.default_rng([opts.seed, 1])
    orders = [in_order(by_grade.get(g, []), rng) for g in range(classes(kind))]
    picked.fetch([n for order in orders for n in order[: opts.per_grade + SPARE]])
    tiles: list[np.ndarray | None] = []
    captions: list[str] = []
    shown: list[str] = []
    for grade, order in enumerate(orders):
        chosen = first_thumbs(order, opts.per_grade, picked, str)
        missing = opts.per_grade - len(chosen)
        names = [PurePosixPath(n).name for n, _ in chosen]
        tiles += [img for _, img in chosen] + [None] * missing
        label = class_label(kind, grade)
        captions += [f"{label} | {n}" for n in names] + [f"{label} | no image"] * missing
        shown += names
    return Gallery(tiles, captions, shown)


def in_order(names: list[T], rng: np.random.Generator) -> list[T]:
    """`names` in a seeded random order (one permutation drawn from rng)."""
    return [names[i] for i in rng.permutation(len(names))]


# --- image properties --------------------------------------------------------------


def image_facts(name: str, data: bytes | Rejection) -> dict[str, Any]:
    """Header size, file size and field measures of one photo (its bytes, or why they could not
    be read); runs in a worker and never raises."""
    facts: dict[str, Any] = {"path": name, "bytes": None, "resolution": None, "reason": None, "detail": "", "gradability": None}
    if isinstance(data, Rejection):
        return {**facts, "reason": data.reason, "detail": data.detail}
    facts["bytes"] = len(data)
    facts["resolution"] = resolution(data)
    try:
        info = preprocess_input(data, name, FACTS_OPTIONS).info
    except Rejection as e:  # Rejected, and the Pillow path's rejections for a PNG/TIFF
        return {**facts, "reason": e.reason, "detail": e.detail}
    except Exception as e:  # one odd file must not end a scan of 100 GB
        return {**facts, "reason": "error", "detail": describe(e)}
    return {**facts, **{m: info[m] for m in METRICS}, "gradability": info["gradability"]}


def _member_facts(args: tuple[Source, str]) -> dict[str, Any]:
    """Worker: read one member of a random-access source (opened once per worker) and measure it."""
    source, name = args
    try:
        data: bytes | Rejection = source.read(name)
    except Rejection as e:
        data = e
    return image_facts(name, data)


def _streamed_facts(args: tuple[str, bytes | Rejection]) -> dict[str, Any]:
    """Worker: measure one member read by the parent's single pass over a streamed source."""
    return image_facts(*args)


def resolution(data: bytes) -> str | None:
    """'WIDTHxHEIGHT' from the JPEG header alone; None when there is no readable header."""
    try:
        return "{}x{}".format(*codec.read_size(data))
    except codec.CodecError:
        return None


def sample_images(images: list[T], n: int, seed: int) -> list[T]:
    """A seeded random subset of n images in folder order; all of them when n is 0 or too big."""
    if n == 0 or n >= len(images):
        return images
    keep = np.sort(np.random.default_rng([seed, 2]).choice(len(images), n, replace=False))
    return [images[i] for i in keep]


def measure(images: list[str], source: Source, opts: ExploreOptions) -> pd.DataFrame:
    """image_facts of the sampled images, on opts.workers processes, in listing order.

    Workers read a random-access source themselves; a streamed one is read in one pass here and fed
    to them, no faster than they measure (bounded_map), so memory stays bounded.
    """
    from tqdm import tqdm  # the progress bar is the command's, not the library's: imported when measuring

    names = sample_images(images, opts.sample, opts.seed)
    workers = min(opts.workers, max(1, len(names)))
    if source.random_access:
        facts = bounded_map(
            _member_facts, ((source, n) for n in names), workers, lambda job, crash: image_facts(job[1], crash), name=lambda job: job[1]
        )
    else:
        facts = bounded_map(
            _streamed_facts, source.stream(names), workers, lambda job, crash: image_facts(job[0], crash), name=lambda job: job[0]
        )
    try:
        rows = list(tqdm(facts, total=len(names), desc="explore", unit="img", disable=not opts.progress))
    except SourceError as e:  # the archive itself broke mid-pass (a part gone, a corrupt stream)
        raise ExploreError(str(e)) from None
    position = {n: i for i, n in enumerate(names)}  # a stream yields in archive order
    rows.sort(key=lambda r: position.get(r["path"], len(position)))
    return pd.DataFrame(rows, columns=FACT_COLUMNS)


def distribution(values: pd.Series) -> dict[str, float] | None:
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return None
    lo, p05, median, p95, hi = np.percentile(v, [0, 5, 50, 95, 100])
    stats = {"min": lo, "p05": p05, "median": median, "mean": v.mean(), "p95": p95, "max": hi}
    return {k: round(float(x), 3) for k, x in stats.items()}


def property_stats(df: pd.DataFrame, n_images: int) -> dict[str, Any]:
    """The numbers of the properties section, from one row of image_facts per sampled file."""
    ok = df[df["reason"].isna()]
    failed = df[df["reason"].notna()]
    return {
        "sampled": len(df),
        "of": n_images,
        "measured": len(ok),
        "unreadable": int(failed["reason"].isin(UNREADABLE).sum()),
        "failed_by_reason": {str(k): int(v) for k, v in sorted(Counter(failed["reason"]).items())},
        "failed": [{"image": r.path, "reason": r.reason, "detail": r.detail} for r in failed.itertuples()],
        "resolutions": {str(k): int(v) for k, v in df["resolution"].value_counts().items()},
        "file_bytes": distribution(df["bytes"]),
        **{m: distribution(ok[m]) for m in METRICS},
        "too_dark": int((ok["brightness"] < TOO_DARK).sum()),
        "over_exposed": int((ok["brightness"] > OVER_EXPOSED).sum()),
        "fov_cut_off": int((ok["fov_fraction"] < 1).sum()),
        "fov_cut_off_rate": round(float((ok["fov_fraction"] < 1).mean()), 4) if len(ok) else None,
    }


def worst_candidates(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Every photo that could go on the worst sheet as (path, why), worst first: rejected ones, then
    by their lowest percentile (unreadable ones, which have no thumbnail, are left out).

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
    return candidates + [(ok.at[i, "path"], f"{metric[i]} {ok.at[i, metric[i]]:.3g}") for i in order]


def gradability_tally(df: pd.DataFrame, labels: dict[str, int] | None, keep: int, kind: str = GRADE) -> Tally[Scored]:
    """The gradability scores of the measured photos, counted per class where the label file gives
    one, with the `keep` least gradable (in listing order among equal scores)."""
    tally: Tally[Scored] = Tally(classes(kind), keep)
    for row in df[df["reason"].isna()].itertuples():
        record = row.gradability
        score = record.get("score") if isinstance(record, dict) else None
        if score is None:
            continue
        label = labels.get(_id(row.path)) if labels is not None else None
        tally.add(float(score), label, Scored(row.path, label, float(score), components(record)))
    return tally


def first_thumbs(candidates: list[T], k: int, picked: Picked, name: Callable[[T], str]) -> list[tuple[T, np.ndarray]]:
    """Up to k candidates in order with their thumbnails, passing over those that cannot be shown."""
    shown = []
    for c in candidates:
        img = thumb(picked.read(name(c)), name(c))
        if img is not None:
            shown.append((c, img))
        if len(shown) == k:
            break
    return shown

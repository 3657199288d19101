"""Look at a raw archive or a shard folder before training: class balance, galleries, image quality.

Writes PNG charts, one self-contained report.html and a summary.json; never modifies its input.
Per-image facts come from preprocess_bytes, the code path sightx-shard uses, so the quality
numbers and rejection reasons shown here are the ones the shards will get. Bad inputs (unreadable
files, missing or broken labels) are findings for the report, not errors.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from sightx import codec, pillow_codec
from sightx import manifest as mf
from sightx.atomic import atomic_write_text
from sightx.errors import Rejection
from sightx.label_formats import read_label_set
from sightx.labels import LabelError, image_id, label_bytes, patient_eye
from sightx.metrics import majority_baseline
from sightx.pool import bounded_map
from sightx.preprocess import PreprocessOptions, Rejected, preprocess_bytes
from sightx.shard.reader import read_samples
from sightx.sheet import contact_sheet
from sightx.sources import Source, SourceError, find_labels, is_archive, open_source
from sightx.sources.picked import Picked

GRADE_NAMES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative")
GRADE_COLORS = ("#4c9a5f", "#c9b23c", "#e08a2c", "#c8452f", "#7b2d6b")
TOO_DARK = 30.0  # mean field brightness (0-255) below which a photo counts as underexposed
OVER_EXPOSED = 200.0  # ... and above which it counts as over-exposed
WORST_SHOWN = 8
WORST_COLS = 4
TILE = (240, 160)  # contact-sheet cell (width, height): the 3:2 shape of most fundus photos
CHART_DPI = 100
# Fixed figure sizes (inches) so every chart's pixel size is known in advance.
CHART_INCHES = {
    "classes.png": (10.0, 4.0),
    "properties.png": (12.0, 7.0),
    "splits.png": (10.0, 4.0),
    "shard_balance.png": (12.0, 4.0),
}
# Small output, no normalisation: metrics on the photo as taken, rejections as sightx-shard makes them.
FACTS_OPTIONS = PreprocessOptions(size=256, normalize="none")
UNREADABLE = ("unreadable", "empty-file", "not-jpeg", "truncated", "decode-error")
_METRICS = ("brightness", "contrast", "sharpness", "fov_fraction")
_EXAMPLES = 20  # names listed per finding; the counts are always complete
Sample = tuple[dict[str, Any], bytes]  # a stored sample's metadata and preprocessed JPEG
T = TypeVar("T")
_OUTPUTS = ("report.html", "summary.json", "gallery.png", "worst.png", "before_after.png", *CHART_INCHES)


class ExploreError(Exception):
    """Nothing to explore or nowhere to write: one line for the user, no traceback."""


@dataclass(frozen=True)
class ExploreOptions:
    per_grade: int = 2
    seed: int = 0
    sample: int = 2000  # images measured for the properties section; 0 = all
    workers: int = 1
    labels: str | None = None  # label CSV; default: trainLabels.csv beside the images
    raw: str | None = None  # raw folder the shards were made from, for the before/after gallery
    progress: bool = True


def explore(path: Path, out: Path, opts: ExploreOptions) -> dict[str, Any]:
    """Report on `path` (a shard folder if it holds manifest.json, else raw images: a folder, zip,
    split parts, the competition zip's train images or a tar) into `out`."""
    if not path.exists():
        raise ExploreError(f"{path} does not exist")
    report = _Report(out)
    if (path / mf.MANIFEST).is_file():
        return _explore_shards(path, report, opts)
    return _explore_raw(path, report, opts)


# --- raw archives ------------------------------------------------------------------


def images_folder(path: Path) -> Path:
    """Kaggle keeps labelled photos in train/ beside test/: explore train/ when it is there."""
    return path / "train" if (path / "train").is_dir() else path


def _explore_raw(path: Path, report: _Report, opts: ExploreOptions) -> dict[str, Any]:
    try:
        source = open_source(images_folder(path) if path.is_dir() else path)
        images = [m.name for m in source.members()]
    except SourceError as e:
        raise ExploreError(str(e)) from None
    labels, label_info = _load_labels(source, opts.labels, images)
    if not images and labels is None:
        raise ExploreError(f"no .jpeg/.jpg files and no label file under {path}: nothing to explore")
    report.prepare()
    summary: dict[str, Any] = {"kind": "raw", "folder": str(path), "images_folder": str(source), "images": len(images)}
    summary["labels"] = label_info
    report.section("Inputs", _inputs_html(summary, label_info))
    picked = Picked(source)
    summary["classes"] = _classes_section(report, labels, images) if labels is not None else None
    summary["gallery"] = _gallery_section(report, labels, images, picked, opts)
    summary["properties"] = _properties_section(report, images, picked, opts)
    report.finish(f"SightX: {path}", summary)
    return summary


def _load_labels(source: Source, override: str | None, images: list[str]) -> tuple[dict[str, int] | None, dict[str, Any]]:
    """The label file and how it matches the images; a missing or broken file is a finding."""
    info: dict[str, Any] = {"file": override, "rows": 0, "error": None}
    try:
        found = (label_bytes(Path(override)), override) if override else find_labels(source)
        if found is None:
            where = " or ".join(str(f) for f in source.label_folders()) or str(source)
            info["error"] = f"no trainLabels.csv in {where}: class distribution and gallery skipped"
            return None, info
        info["file"] = found[1]
        labels = read_label_set(*found).grades
    except (LabelError, SourceError) as e:
        info["error"] = f"{e}: class distribution and gallery skipped"
        return None, info
    ids = {_id(n) for n in images}
    info["rows"] = len(labels)
    info["images_without_label"] = _examples(sorted(n for n in images if _id(n) not in labels))
    info["labels_without_image"] = _examples(sorted(set(labels) - ids))
    return labels, info


def _id(name: str) -> str:
    return image_id(PurePosixPath(name))


def _examples(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "examples": items[:_EXAMPLES]}


def class_stats(labels: dict[str, int], present: set[str]) -> dict[str, Any]:
    """Grade counts over the label file, per eye, eye agreement per patient, and the constant baseline."""
    grades = np.array(list(labels.values()), dtype=np.int64)
    counts = np.bincount(grades, minlength=mf.NUM_GRADES).tolist()
    by_eye: dict[str, list[int]] = {}
    eyes: dict[str, dict[str, int]] = {}
    for image, grade in labels.items():
        patient, eye = patient_eye(image)
        by_eye.setdefault(eye or "unknown", [0] * mf.NUM_GRADES)[grade] += 1
        if eye:
            eyes.setdefault(patient, {})[eye] = grade
    both = {p: e for p, e in sorted(eyes.items()) if len(e) == 2}
    discordant = [{"patient": p, "left": e["left"], "right": e["right"]} for p, e in both.items() if e["left"] != e["right"]]
    return {
        "total": len(labels),
        "counts": counts,
        "percent": [_pct(c, len(labels)) for c in counts],
        "present": np.bincount([g for i, g in labels.items() if i in present], minlength=mf.NUM_GRADES).tolist(),
        "by_eye": dict(sorted(by_eye.items())),
        "patients": len({patient_eye(i)[0] for i in labels}),
        "patients_with_both_eyes": len(both),
        "discordant_patients": len(discordant),
        "discordant_by_difference": dict(sorted(Counter(str(abs(d["left"] - d["right"])) for d in discordant).items())),
        "discordant_examples": discordant[:_EXAMPLES],
        "baseline": _baseline(grades),
    }


def _pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _baseline(grades: np.ndarray) -> dict[str, Any]:
    """What a model that ignores the image scores: the bar every model must clear."""
    b = majority_baseline(grades)
    text = (
        f"Always predicting grade {b['grade']} ({GRADE_NAMES[b['grade']]}) is right for {b['accuracy']:.1%} of images "
        f"and has quadratic weighted kappa {b['kappa']:.3f}. An accuracy near {b['accuracy']:.0%} therefore says "
        "nothing; judge models by kappa and per-grade recall."
    )
    return {"grade": b["grade"], "accuracy": round(b["accuracy"], 4), "kappa": round(b["kappa"], 4), "text": text}


def _classes_section(report: _Report, labels: dict[str, int], images: list[str]) -> dict[str, Any]:
    stats = class_stats(labels, {_id(n) for n in images})
    eyes = list(stats["by_eye"])
    rows = [
        [g, GRADE_NAMES[g], stats["counts"][g], f"{stats['percent'][g]:.2f}%", stats["present"][g]] + [stats["by_eye"][e][g] for e in eyes]
        for g in range(mf.NUM_GRADES)
    ]
    agreement = (
        f"{stats['patients']} patients, {stats['patients_with_both_eyes']} with both eyes labelled; "
        f"{stats['discordant_patients']} of those have eyes of different grades "
        f"({_pct(stats['discordant_patients'], stats['patients_with_both_eyes']):.1f}%), "
        f"by grade difference: {_pairs(stats['discordant_by_difference']) or 'none'}."
    )
    report.section(
        "Class distribution",
        _table(["grade", "name", "labels", "share", "with image", *eyes], rows),
        report.chart("classes.png", lambda fig: _draw_classes(fig, stats)),
        _para(agreement),
        _para(stats["baseline"]["text"]),
    )
    return stats


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items())


def _draw_classes(fig: Any, stats: dict[str, Any]) -> None:
    left, right = fig.subplots(1, 2)
    grades = np.arange(mf.NUM_GRADES)
    bars = left.bar(grades, stats["counts"], color=GRADE_COLORS)
    left.bar_label(bars, [f"{c} ({p:.1f}%)" for c, p in zip(stats["counts"], stats["percent"])], fontsize=8)
    left.set(title="Labels per grade", xlabel="grade", ylabel="images", xticks=grades)
    width = 0.8 / len(stats["by_eye"])
    for i, (eye, counts) in enumerate(stats["by_eye"].items()):
        right.bar(grades + (i - (len(stats["by_eye"]) - 1) / 2) * width, counts, width, label=eye)
    right.set(title="Per eye", xlabel="grade", ylabel="images", xticks=grades)
    right.legend()


def _gallery_section(
    report: _Report, labels: dict[str, int] | None, images: list[str], picked: Picked, opts: ExploreOptions
) -> dict[str, Any]:
    if labels is None:
        report.section("Grade gallery", _para("Skipped: no usable label file."))
        return {"shown": 0, "note": "no usable label file"}
    by_grade: dict[int, list[str]] = {}
    for name in images:
        if _id(name) in labels:
            by_grade.setdefault(labels[_id(name)], []).append(name)
    # The same seeded orders _first_readable walks, so a stream fetches what it will look at.
    ahead = np.random.default_rng([opts.seed, 1])
    picked.fetch([n for g in range(mf.NUM_GRADES) for n in _in_order(by_grade.get(g, []), ahead)[: opts.per_grade + _SPARE]])
    rng = np.random.default_rng([opts.seed, 1])
    tiles: list[np.ndarray | None] = []
    captions: list[str] = []
    shown: list[str] = []
    for grade in range(mf.NUM_GRADES):
        chosen = _first_readable(_in_order(by_grade.get(grade, []), rng), picked, opts.per_grade)
        missing = opts.per_grade - len(chosen)
        tiles += [img for img, _ in chosen] + [None] * missing
        captions += [f"grade {grade} | {PurePosixPath(n).name}" for _, n in chosen] + [f"grade {grade} | no image"] * missing
        shown += [PurePosixPath(n).name for _, n in chosen]
    sheet = contact_sheet(tiles, captions, cols=opts.per_grade, rows=mf.NUM_GRADES, tile=TILE)
    note = f"{opts.per_grade} random photo(s) per grade (seed {opts.seed}), one row per grade."
    report.section("Grade gallery", _para(note), report.picture("gallery.png", sheet))
    return {"shown": len(shown), "images": shown}


_SPARE = 4  # unreadable photos a streamed source's gallery can pass over per grade


def _in_order(names: list[str], rng: np.random.Generator) -> list[str]:
    return [names[i] for i in rng.permutation(len(names))]


def _first_readable(names: list[str], picked: Picked, n: int) -> list[tuple[np.ndarray, str]]:
    """Up to n thumbnails of `names` in order, passing over unreadable photos."""
    chosen = []
    for name in names:
        thumb = _thumb(picked.read(name), name)
        if thumb is not None:
            chosen.append((thumb, name))
        if len(chosen) == n:
            break
    return chosen


def thumbnail(path: Path) -> np.ndarray | None:
    """A decode at the smallest DCT scale that still fills a tile: fast even for 12 MP photos."""
    try:
        return _thumb(path.read_bytes(), path.name)
    except OSError:
        return None


def _thumb(data: bytes | None, name: str) -> np.ndarray | None:
    if data is None:
        return None
    try:
        return pillow_codec.decode(data)[0] if pillow_codec.decodes(name) else codec.decode(data, TILE)[0]
    except codec.CodecError:
        return None


# --- image properties --------------------------------------------------------------


def image_facts(name: str, data: bytes | Rejection) -> dict[str, Any]:
    """Header size, file size and quality metrics of one photo; never raises."""
    facts: dict[str, Any] = {"path": name, "bytes": None, "resolution": None, "reason": None, "detail": ""}
    if isinstance(data, Rejection):
        return {**facts, "reason": data.reason, "detail": data.detail}
    facts["bytes"] = len(data)
    facts["resolution"] = _resolution(data)
    try:
        info = preprocess_bytes(data, FACTS_OPTIONS, pillow_codec.decodes(name)).info
    except Rejected as e:
        return {**facts, "reason": e.reason, "detail": e.detail}
    except Exception as e:  # one odd file must not end a scan of 100 GB
        return {**facts, "reason": "error", "detail": f"{type(e).__name__}: {e}".splitlines()[0]}
    return {**facts, **{m: info[m] for m in _METRICS}}


def _member_facts(args: tuple[Source, str]) -> dict[str, Any]:
    """Worker: read one member of a random-access source (opened once per worker) and measure it."""
    source, name = args
    try:
        data: bytes | Rejection = source.read(name)
    except Rejection as e:
        data = e
    return image_facts(name, data)


def _streamed_facts(args: tuple[str, bytes | Rejection]) -> dict[str, Any]:
    return image_facts(*args)


def _resolution(data: bytes) -> str | None:
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


def _measure(images: list[str], source: Source, opts: ExploreOptions) -> pd.DataFrame:
    names = sample_images(images, opts.sample, opts.seed)
    workers = min(opts.workers, max(1, len(names)))
    if source.random_access:
        facts = bounded_map(_member_facts, ((source, n) for n in names), workers)
    else:
        facts = bounded_map(_streamed_facts, source.stream(names), workers)
    rows = list(tqdm(facts, total=len(names), desc="explore", unit="img", disable=not opts.progress))
    return pd.DataFrame(rows, columns=["path", "bytes", "resolution", "reason", "detail", *_METRICS])


def _stats(values: pd.Series) -> dict[str, float] | None:
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
        "file_bytes": _stats(df["bytes"]),
        **{m: _stats(ok[m]) for m in _METRICS},
        "too_dark": int((ok["brightness"] < TOO_DARK).sum()),
        "over_exposed": int((ok["brightness"] > OVER_EXPOSED).sum()),
        "fov_cut_off": int((ok["fov_fraction"] < 1).sum()),
        "fov_cut_off_rate": round(float((ok["fov_fraction"] < 1).mean()), 4) if len(ok) else None,
    }


def _properties_section(report: _Report, images: list[str], picked: Picked, opts: ExploreOptions) -> dict[str, Any]:
    df = _measure(images, picked.source, opts)
    stats = property_stats(df, len(images))
    parts = [*_properties_tables(stats, opts.seed), report.chart("properties.png", lambda fig: _draw_properties(fig, df))]
    if stats["failed"]:
        failed = [[f["image"], f["reason"], f["detail"]] for f in stats["failed"][:_EXAMPLES]]
        parts += [_para(f"Files that could not be measured ({len(stats['failed'])}):"), _table(["image", "reason", "detail"], failed)]
    worst = _worst(df, WORST_SHOWN, picked)
    stats["worst"] = [{"image": p, "why": why} for p, why, _ in worst]
    if worst:
        captions = [f"{PurePosixPath(p).stem}: {why}" for p, why, _ in worst]
        sheet = contact_sheet([img for _, _, img in worst], captions, cols=WORST_COLS, tile=TILE)
        parts += [
            _para("Worst-quality photos in the sample (rejected by preprocessing first, then lowest on any metric):"),
            report.picture("worst.png", sheet),
        ]
    report.section("Image properties", *parts)
    return stats


def _properties_tables(stats: dict[str, Any], seed: int) -> list[str]:
    cut = f"{stats['fov_cut_off']} ({_pct(stats['fov_cut_off'], stats['measured']):.1f}%)"
    rows = [
        ["sampled", f"{stats['sampled']} of {stats['of']} (seed {seed})"],
        ["measured (field of view found)", stats["measured"]],
        ["unreadable (I/O or JPEG errors)", stats["unreadable"]],
        ["not usable, by reason", _pairs(stats["failed_by_reason"]) or "none"],
        ["resolutions (most common first)", _pairs(dict(list(stats["resolutions"].items())[:10])) or "none"],
        [f"too dark (brightness < {TOO_DARK:g})", stats["too_dark"]],
        [f"over-exposed (brightness > {OVER_EXPOSED:g})", stats["over_exposed"]],
        ["field cut off by the frame", cut],
    ]
    columns = ("min", "p05", "median", "mean", "p95", "max")
    dist = [[k, *(stats[k][c] if stats[k] else "" for c in columns)] for k in ("file_bytes", *_METRICS)]
    return [
        _para(
            "Measured on the preprocessing path sightx-shard uses (256 px field crop, no normalisation); "
            "brightness is the mean grey level inside the field of view, sharpness the Laplacian variance."
        ),
        _table(["property", "value"], rows),
        _table(["metric", *columns], dist),
    ]


def _worst(df: pd.DataFrame, k: int, picked: Picked) -> list[tuple[str, str, np.ndarray]]:
    """Up to k decodable photos, worst first: rejected ones, then by their lowest percentile.

    Percentiles (sharpness, closeness to the median brightness, visible field) make the metrics
    comparable without thresholds, so a photo that is bad in any one way ranks low.
    """
    rejected = df[df["reason"].notna() & ~df["reason"].isin(UNREADABLE)]
    ok = df[df["reason"].isna()]
    pct = pd.DataFrame(
        {
            "sharpness": ok["sharpness"].rank(pct=True),
            "brightness": (-(ok["brightness"] - ok["brightness"].median()).abs()).rank(pct=True),
            "fov_fraction": ok["fov_fraction"].rank(pct=True),
        }
    )
    order = pct.min(axis=1).sort_values(kind="stable").index
    metric = pct.idxmin(axis=1) if len(ok) else pd.Series(dtype=str)
    candidates = [(r.path, r.reason) for r in rejected.itertuples()]
    candidates += [(ok.at[i, "path"], f"{metric[i]} {ok.at[i, metric[i]]:.3g}") for i in order]
    picked.fetch([p for p, _ in candidates[: k + _SPARE]])
    worst = []
    for path, why in candidates:
        img = _thumb(picked.read(path), path)
        if img is not None:
            worst.append((path, why, img))
        if len(worst) == k:
            break
    return worst


def _draw_properties(fig: Any, df: pd.DataFrame) -> None:
    axes = fig.subplots(2, 3).ravel()
    mix = df["resolution"].value_counts().head(8)[::-1]
    axes[0].barh(mix.index.astype(str), mix.to_numpy())
    axes[0].set(title="Resolution mix (top 8)", xlabel="images")
    _hist(axes[1], df["bytes"] / 1e6, "File size", "MB")
    ok = df[df["reason"].isna()]
    _hist(axes[2], ok["brightness"], "Exposure: mean field brightness", "grey level (0-255)", bins=np.linspace(0, 255, 52))
    axes[2].axvline(TOO_DARK, color="k", ls="--", lw=1)
    axes[2].axvline(OVER_EXPOSED, color="k", ls="--", lw=1)
    sharp = ok["sharpness"].clip(lower=1e-3)
    log_bins = np.geomspace(sharp.min(), sharp.max() * 1.001, 31) if len(sharp) else None
    _hist(axes[3], sharp, "Sharpness", "Laplacian variance (log)", bins=log_bins)
    if len(sharp):
        axes[3].set_xscale("log")
    _hist(axes[4], ok["contrast"], "Contrast", "grey-level std")
    _hist(axes[5], ok["fov_fraction"], "Visible field of view", "fraction of the circle in frame", bins=np.linspace(0, 1, 41))


def _hist(ax: Any, values: pd.Series, title: str, xlabel: str, bins: Any = None) -> None:
    """A histogram, or 'no data' in its place so the chart layout never changes."""
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size:
        ax.hist(v, bins=bins if bins is not None else 30, color="#4a78a8")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel=xlabel, ylabel="images")


# --- shard folders -----------------------------------------------------------------


def _explore_shards(path: Path, report: _Report, opts: ExploreOptions) -> dict[str, Any]:
    try:
        manifest = mf.read(path)
    except mf.ManifestError as e:
        raise ExploreError(str(e)) from None
    report.prepare()
    done = [s for s in manifest["shards"] if s.get("done")]
    s = manifest.get("summary", {})
    summary: dict[str, Any] = {
        "kind": "shards",
        "folder": str(path),
        "complete": bool(manifest.get("complete")),
        "preprocess": manifest["options"].get("preprocess"),
        "inputs": s.get("inputs"),
        "written": s.get("written"),
        "splits": split_stats(manifest),
        "shards": [{"name": x["name"], "split": x["split"], "count": x["count"], "grades": x["grades"]} for x in done],
        "pending_shards": [x["name"] for x in manifest["shards"] if not x.get("done")],
        "rejects": _rejects(path, s),
    }
    _splits_section(report, summary)
    _rejects_section(report, summary["rejects"])
    summary["before_after"] = _before_after_section(report, path, done, opts)
    report.finish(f"SightX shards: {path}", summary)
    return summary


def split_stats(manifest: dict[str, Any]) -> dict[str, Any]:
    """Per split: shards, samples, grade counts and shares, and the class weights stored for training."""
    return {
        name: {
            "shards": info["shards"],
            "count": info["count"],
            "grades": info["grades"],
            "percent": [_pct(c, sum(info["grades"])) for c in info["grades"]],
            "class_weights": info.get("class_weights"),
        }
        for name, info in manifest["splits"].items()
    }


def _rejects(path: Path, manifest_summary: dict[str, Any]) -> dict[str, Any]:
    """Rejections by reason from the manifest, with example rows from rejects.csv when present."""
    out: dict[str, Any] = {
        "count": manifest_summary.get("rejected", 0),
        "by_reason": manifest_summary.get("rejected_by_reason", {}),
    }
    try:
        with open(path / mf.REJECTS, newline="") as f:
            out["examples"] = list(csv.DictReader(f))[:_EXAMPLES]
    except OSError:
        out["examples"] = []
        out["note"] = f"{mf.REJECTS} not found (the shard run has not finished)"
    return out


def _splits_section(report: _Report, summary: dict[str, Any]) -> None:
    splits = summary["splits"]
    rows = [[name, info["shards"], info["count"], *_grade_cells(name, info)] for name, info in splits.items()]
    weights = [
        [f"{name} ({kind})", *info["class_weights"][kind]]
        for name, info in splits.items()
        if info["class_weights"]
        for kind in ("inverse", "effective")
    ]
    status = "complete" if summary["complete"] else f"incomplete: {len(summary['pending_shards'])} shard(s) not built"
    labelled = [x for x in summary["shards"] if x["split"] != "test"]
    report.section(
        "Splits and class mix",
        _para(
            f"{summary['inputs']} inputs, {summary['written']} samples written; {status}. "
            f"Preprocessing: {_pairs(summary['preprocess'] or {})}."
        ),
        _table(["split", "shards", "samples", *(f"grade {g}" for g in range(mf.NUM_GRADES))], rows),
        report.chart("splits.png", lambda fig: _draw_splits(fig, splits)),
        report.chart("shard_balance.png", lambda fig: _draw_shard_balance(fig, labelled)),
        _para(
            "Class weights stored per split (the mean weight over a split's samples is 1). sightx-train's "
            "loss balancing uses the train split's inverse weights, which every sample's .json carries."
        ),
        _table(["split (weighting)", *(f"grade {g}" for g in range(mf.NUM_GRADES))], weights),
    )


def _grade_cells(split: str, info: dict[str, Any]) -> list[str]:
    """'count (share%)' per grade; the unlabelled test split has none."""
    if split == "test":
        return ["-"] * mf.NUM_GRADES
    return [f"{c} ({p:.1f}%)" for c, p in zip(info["grades"], info["percent"])]


def _draw_splits(fig: Any, splits: dict[str, Any]) -> None:
    ax = fig.subplots()
    labelled = {k: v for k, v in splits.items() if k != "test"}
    grades = np.arange(mf.NUM_GRADES)
    width = 0.8 / max(1, len(labelled))
    for i, (name, info) in enumerate(labelled.items()):
        bars = ax.bar(grades + (i - (len(labelled) - 1) / 2) * width, info["percent"], width, label=f"{name} ({info['count']})")
        ax.bar_label(bars, [f"{p:.1f}" for p in info["percent"]], fontsize=7)
    ax.set(title="Class mix per split", xlabel="grade", ylabel="% of split", xticks=grades)
    if labelled:
        ax.legend()


def _draw_shard_balance(fig: Any, shards: list[dict[str, Any]]) -> None:
    """Stacked grade shares per shard: stratified shards should all look alike."""
    ax = fig.subplots()
    x = np.arange(len(shards))
    shares = np.array([[_pct(c, sum(s["grades"])) for c in s["grades"]] for s in shards]).reshape(-1, mf.NUM_GRADES)
    bottom = np.zeros(len(shards))
    for g in range(mf.NUM_GRADES):
        ax.bar(x, shares[:, g], 0.8, bottom=bottom, color=GRADE_COLORS[g], label=f"grade {g}")
        bottom += shares[:, g]
    step = max(1, len(shards) // 30)  # at most ~30 tick labels, however many shards
    ax.set_xticks(x[::step], [_shard_label(s["name"]) for s in shards[::step]], rotation=90, fontsize=7)
    ax.set(title="Class mix per shard", ylabel="% of shard", ylim=(0, 100))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def _shard_label(name: str) -> str:
    """'train-000012.tar' -> 'train 12': short enough for a tick label."""
    split, _, index = name.removesuffix(".tar").partition("-")
    return f"{split} {int(index)}"


def _rejects_section(report: _Report, rejects: dict[str, Any]) -> None:
    by_reason = [[k, v] for k, v in rejects["by_reason"].items()]
    parts = [_table(["reason", "images"], by_reason) if by_reason else _para("No rejections.")]
    if rejects["examples"]:
        examples = [[r["source"], r["reason"], r["detail"]] for r in rejects["examples"]]
        parts += [_para(f"First {len(examples)} rows of {mf.REJECTS}:"), _table(["source", "reason", "detail"], examples)]
    if rejects.get("note"):
        parts.append(_para(rejects["note"]))
    report.section(f"Rejected inputs ({rejects['count']})", *parts)


def raw_root(raw: Path, sources: list[str]) -> Path | None:
    """The folder the shard sources are relative to: raw itself, or its Kaggle train/ subfolder."""
    for folder in (raw, raw / "train"):
        if any((folder / s).is_file() for s in sources):
            return folder
    return None


def _before_after_section(report: _Report, path: Path, shards: list[dict[str, Any]], opts: ExploreOptions) -> dict[str, Any]:
    title = "Before and after preprocessing"
    found = _before_after_inputs(path, shards, opts)
    if isinstance(found, str):
        report.section(title, _para(found))
        return {"raw": opts.raw, "shown": 0, "note": found}
    samples, raw_thumb, where = found
    cols = 2 * opts.per_grade
    tiles: list[np.ndarray | None] = []
    captions: list[str] = []
    for grade, picked in sorted(samples.items()):
        for meta, jpg in picked:
            tiles += [raw_thumb(meta["source"]), codec.decode(jpg)[0]]
            captions += [f"grade {grade} | {Path(meta['source']).stem}", f"grade {grade} | preprocessed"]
        blank = cols - 2 * len(picked)  # a rare grade may have fewer samples: keep one row per grade
        tiles += [None] * blank
        captions += [""] * blank
    sheet = contact_sheet(tiles, captions, cols=cols, rows=len(samples), tile=TILE)
    note = f"Raw photo (left) beside the stored sample (right), {opts.per_grade} per grade, seed {opts.seed}; raw files from {where}."
    report.section(title, _para(note), report.picture("before_after.png", sheet))
    return {"raw": where, "shown": sum(len(p) for p in samples.values()), "note": None}


RawThumb = Callable[[str], "np.ndarray | None"]


def _before_after_inputs(
    path: Path, shards: list[dict[str, Any]], opts: ExploreOptions
) -> tuple[dict[int, list[Sample]], RawThumb, str] | str:
    """The samples to show, how to get their raw photos (from a folder or the archive they were
    sharded from) and where those are, or why the gallery is skipped."""
    if opts.raw is None:
        return (
            "Skipped: pass --raw PATH (the folder or archive given to sightx-shard) to see raw photos beside their preprocessed versions."
        )
    try:
        samples = shard_samples(path, [s for s in shards if s["split"] != "test"], opts.per_grade, opts.seed)
    except (OSError, tarfile.TarError) as e:
        return f"Skipped: cannot read the shards ({e})."
    if not samples:
        return "Skipped: the shards hold no labelled samples."
    sources = [m["source"] for picked in samples.values() for m, _ in picked]
    raw = Path(opts.raw)
    if raw.is_file() or is_archive(raw):
        try:
            archive = open_source(raw)
            members = {m.name for m in archive.members()}
        except SourceError as e:
            return f"Skipped: {e}."
        if not members & set(sources):
            return f"Skipped: none of the sampled source files are in {opts.raw}."
        picked = Picked(archive)
        picked.fetch(sources)
        return samples, lambda name: _thumb(picked.read(name), name), str(archive)
    root = raw_root(raw, sources)
    if root is None:
        return f"Skipped: none of the sampled source files were found under {opts.raw} (or its train/ folder)."
    return samples, lambda name: thumbnail(root / name), str(root)


def shard_samples(path: Path, shards: list[dict[str, Any]], per_grade: int, seed: int) -> dict[int, list[Sample]]:
    """Up to per_grade seeded random samples of each grade, reading only as many shards as needed.

    Shards are stratified, so one or two usually hold every grade; the rest of a large set is never read.
    """
    rng = np.random.default_rng([seed, 3])
    wanted = {g for s in shards for g in range(mf.NUM_GRADES) if s["grades"][g]}
    found: dict[int, list[Sample]] = {}
    for i in rng.permutation(len(shards)):
        for meta, jpg in labelled_samples(mf.shard_file(path, shards[i])):
            found.setdefault(meta["grade"], []).append((meta, jpg))
        if all(len(found.get(g, [])) >= per_grade for g in wanted):
            break
    return {g: [found[g][j] for j in sorted(rng.permutation(len(found[g]))[:per_grade])] for g in sorted(found)}


def labelled_samples(tar_path: Path) -> Iterator[Sample]:
    """(metadata, preprocessed JPEG) per labelled sample of a shard, streamed in order."""
    for _, parts in read_samples(tar_path):
        if "json" in parts and "jpg" in parts:
            meta = json.loads(parts["json"])
            if meta.get("grade") is not None:
                yield meta, parts["jpg"]


# --- report output -----------------------------------------------------------------


def _pyplot() -> Any:
    """pyplot on Agg, imported on first use: headless, and worker processes never pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class _Report:
    """Collects the report's sections and writes its PNGs, report.html and summary.json into one folder."""

    out: Path
    sections: list[str] = field(default_factory=list)
    figures: dict[str, list[int]] = field(default_factory=dict)

    def prepare(self) -> None:
        """Create the folder and drop outputs of an earlier run, which this run may not rewrite."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in _OUTPUTS:
                (self.out / name).unlink(missing_ok=True)
        except OSError as e:
            raise ExploreError(f"cannot write to {self.out}: {e.strerror or e}") from None

    def section(self, title: str, *parts: str) -> None:
        self.sections.append(f"<h2>{html.escape(title)}</h2>\n" + "\n".join(parts))

    def chart(self, name: str, draw: Callable[[Any], None]) -> str:
        """A matplotlib chart of the fixed size CHART_INCHES[name] at CHART_DPI, as PNG; returns its <img>."""
        plt = _pyplot()
        inches = CHART_INCHES[name]
        fig = plt.figure(figsize=inches, dpi=CHART_DPI, layout="constrained")
        try:
            draw(fig)
            fig.savefig(self.out / name, dpi=CHART_DPI)
        finally:
            plt.close(fig)
        self.figures[name] = [round(inches[0] * CHART_DPI), round(inches[1] * CHART_DPI)]
        return self._img(name)

    def picture(self, name: str, rgb: np.ndarray) -> str:
        """An RGB array (a contact sheet) as PNG; returns its <img>."""
        Image.fromarray(rgb).save(self.out / name)
        self.figures[name] = [rgb.shape[1], rgb.shape[0]]
        return self._img(name)

    def _img(self, name: str) -> str:
        data = base64.b64encode((self.out / name).read_bytes()).decode()
        w, h = self.figures[name]
        return f'<p><img alt="{name}" width="{w}" height="{h}" src="data:image/png;base64,{data}"></p>'

    def finish(self, title: str, summary: dict[str, Any]) -> None:
        summary["figures"] = self.figures
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
        page = _PAGE.format(title=html.escape(title), body="\n".join(self.sections))
        atomic_write_text(self.out / "report.html", page)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
img {{ max-width: 100%; height: auto; }}
.problem {{ color: #a02020; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _para(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def _inputs_html(summary: dict[str, Any], labels: dict[str, Any]) -> str:
    """Where the data came from, and the mismatches between images and labels."""
    parts = [
        _para(f"{summary['images']} images in {summary['images_folder']}; label file: {labels['file'] or 'none'} ({labels['rows']} rows).")
    ]
    if labels["error"]:
        parts.append(_para(labels["error"], "problem"))
    mismatches = {"images_without_label": "image(s) without a label row", "labels_without_image": "label row(s) without an image"}
    for key, what in mismatches.items():
        found = labels.get(key)
        if found and found["count"]:
            shown = ", ".join(found["examples"]) + (" ..." if found["count"] > len(found["examples"]) else "")
            parts.append(_para(f"{found['count']} {what}: {shown}", "problem"))
    return "\n".join(parts)


def format_summary(summary: dict[str, Any], out: Path) -> str:
    """The few lines the command prints; the rest is in the report."""
    lines = []
    if summary["kind"] == "raw":
        classes, props = summary["classes"], summary["properties"]
        lines.append(f"{summary['images']} images in {summary['images_folder']}")
        if classes:
            b = classes["baseline"]
            grades = " ".join(f"{g}:{c}" for g, c in enumerate(classes["counts"]))
            lines.append(
                f"  labels: {classes['total']} rows, grades {grades}; always-{b['grade']} baseline: "
                f"accuracy {b['accuracy']:.1%}, kappa {b['kappa']:.3f}"
            )
        else:
            lines.append(f"  labels: {summary['labels']['error']}")
        lines.append(
            f"  sampled {props['sampled']}: {props['unreadable']} unreadable, {props['too_dark']} too dark, "
            f"{props['over_exposed']} over-exposed, {props['fov_cut_off']} field cut off"
        )
    else:
        state = "complete" if summary["complete"] else f"{len(summary['pending_shards'])} shard(s) not built yet"
        lines.append(f"shards in {summary['folder']} ({state})")
        for name, info in summary["splits"].items():
            lines.append(f"  {name:5s} {info['count']:6d} samples in {info['shards']} shard(s)")
        rejects = summary["rejects"]
        lines.append(f"  {rejects['count']} rejected" + (f" ({_pairs(rejects['by_reason'])})" if rejects["count"] else ""))
        if summary["before_after"]["note"]:
            lines.append(f"  {summary['before_after']['note']}")
    lines.append(f"  report: {out / 'report.html'}   summary: {out / 'summary.json'}")
    return "\n".join(lines)

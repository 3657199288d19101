"""sightx-bench real: the image understanding on real photo folders, through the one preprocessing path.

For each set (a folder of photos; a folder whose subfolders hold photos is one set per subfolder) it
reports photos read, rejections by reason (`no-fov` above all), the circles found (radius over the
short side, centre offset, share inside the frame), the gradability scores (the share warned, and,
where the set has a `gradability.csv` of `image,gradable[,eyeq_quality]`, the AUC and the operating
point at the default threshold) and milliseconds of CPU per photo (this process: other jobs on the
machine disturb it less than wall time) for the whole preprocessing and for the
score alone. A set the shipped model was fitted on says so and shows the fit's cross-validated
figures beside its own (in-sample, so optimistic) ones.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sightx.evaluation.metrics import roc_auc
from sightx.image import codec, gradability, gradability_features
from sightx.image.formats import IMAGE_SUFFIXES
from sightx.image.gradability_fit import FIT
from sightx.image.preprocess import Decoded, PreprocessOptions, Rejected, analysis_field, decode_bytes, preprocess_decoded
from sightx.sources.folder import find_images, find_inputs

LABELS = "gradability.csv"
DEFAULT = Path("..") / "shared" / "real-dev"


def sets(folders: list[Path]) -> list[Path]:
    """The photo sets under the folders given: a folder holding photos directly, or each subfolder that does."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
        direct = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
        children = [] if direct else [c for c in sorted(folder.iterdir()) if c.is_dir() and find_images(c)]
        out.extend(children or [folder])
    return out


def measure_set(
    folder: Path, size: int, log: Callable[[str], None], sheet: list[tuple[np.ndarray | None, str]] | None = None
) -> dict[str, Any]:
    """One set's figures; rejected photos (with their reason) appended to `sheet` when given."""
    opts = PreprocessOptions(size=size)
    labels = _labels(folder)
    rejected: Counter[str] = Counter()
    radii: list[float] = []
    offsets: list[float] = []
    fractions: list[float] = []
    scores: dict[str, float] = {}
    reasons: Counter[str] = Counter()
    spent = score_spent = 0.0
    photos, others = find_inputs(folder)
    for path, what in others:  # named like a photo, not a file: counted, never opened
        rejected["not-a-file"] += 1
        if sheet is not None:
            sheet.append((None, f"{path.name}: not-a-file: {what}"))
    for path in photos:
        try:
            data = path.read_bytes()
        except OSError as e:  # counted with its reason like any other photo that cannot be measured
            rejected["unreadable"] += 1
            if sheet is not None:
                sheet.append((None, f"{path.name}: unreadable: {e.strerror or e}"))
            continue
        start = time.process_time()
        try:
            decoded = decode_bytes(data, opts)
            done = preprocess_decoded(decoded, opts)
        except Rejected as e:
            rejected[e.reason] += 1
            if sheet is not None:
                sheet.append((_thumbnail(data), f"{path.name}: {e.reason}"))
            continue
        spent += time.process_time() - start
        info = done.info
        w, h = info["orig_size"]
        c = info["circle"]
        radii.append(c["r"] / min(w, h))
        offsets.append(((c["cx"] - (w - 1) / 2) ** 2 + (c["cy"] - (h - 1) / 2) ** 2) ** 0.5 / c["r"])
        fractions.append(info["fov_fraction"])
        record = info["gradability"]
        scores[path.stem] = record["score"]
        if record["reason"]:
            reasons[record["reason"]] += 1
        score_spent += _score_cost(decoded, opts)
    n = len(scores)
    log(f"real   {folder}: {len(photos)} photos, {sum(rejected.values())} rejected, {n} scored")
    out: dict[str, Any] = {
        "folder": str(folder),
        "photos": len(photos) + len(others),
        "rejected": dict(rejected),
        "no_fov": rejected.get("no-fov", 0),
        "circle": _circles(radii, offsets, fractions),
        "warned": _share(sum(s < gradability.DEFAULT_THRESHOLD for s in scores.values()), n),
        "warn_reasons": dict(reasons.most_common()),
        "ms_per_photo": round(1000 * spent / n, 2) if n else None,
        "score_ms_per_photo": round(1000 * score_spent / n, 2) if n else None,
    }
    if labels:
        out["gradability"] = _against_labels(scores, labels)
        if _fitted_on(folder):
            out["gradability"]["fitted_here"] = {
                k: FIT["cv"][k] for k in ("cv_auc", "cv_auc_sd", "sensitivity", "specificity", "threshold")
            }
    return out


def _labels(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / LABELS
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["image"]: r for r in csv.DictReader(f) if r.get("gradable") in ("0", "1")}


def _fitted_on(folder: Path) -> bool:
    """The set the shipped model was fitted on (its folder name and size match the fit's record)."""
    return folder.name == FIT["cv"].get("fitted_on") and len(_labels(folder)) == FIT["cv"]["photos"]


def _against_labels(scores: dict[str, float], labels: dict[str, dict[str, str]]) -> dict[str, Any]:
    ids = [i for i in scores if i in labels]
    gradable = [labels[i]["gradable"] == "1" for i in ids]
    s = [scores[i] for i in ids]
    t = gradability.DEFAULT_THRESHOLD
    n_bad = sum(not g for g in gradable)
    out: dict[str, Any] = {
        "labelled": len(ids),
        "ungradable": n_bad,
        "auc": _round(roc_auc(gradable, s)),
        "sensitivity": _share(sum(not g and v < t for g, v in zip(gradable, s)), n_bad),
        "specificity": _share(sum(g and v >= t for g, v in zip(gradable, s)), len(ids) - n_bad),
    }
    eyeq = [(labels[i].get("eyeq_quality") or "", scores[i]) for i in ids]
    graded = [(q, v) for q, v in eyeq if q in ("0", "1", "2")]
    if graded:
        out["eyeq_graded"] = len(graded)
        out["eyeq_reject_auc"] = _round(roc_auc([q != "2" for q, _ in graded], [v for _, v in graded]))
    return out


def _score_cost(decoded: Decoded, opts: PreprocessOptions) -> float:
    """CPU seconds the score itself takes on this photo's analysis field (measures, features, model)."""
    img, c, frame, fov_fraction = analysis_field(decoded, opts)
    start = time.process_time()
    gradability.assess(img, c, frame, fov_fraction)
    return time.process_time() - start


def _circles(radii: list[float], offsets: list[float], fractions: list[float]) -> dict[str, Any]:
    if not radii:
        return {}
    q = np.percentile(radii, [5, 50, 95])
    return {
        "radius_over_short_side_p5_p50_p95": [round(float(v), 3) for v in q],
        "centre_offset_over_r_p95": round(float(np.percentile(offsets, 95)), 3),
        "inside_frame_min_median": [round(min(fractions), 3), round(statistics.median(fractions), 3)],
    }


def _thumbnail(data: bytes) -> np.ndarray | None:
    try:
        return codec.decode(data, (240, 240))[0]
    except codec.CodecError:  # a photo too broken to show (or not a JPEG): its cell stays grey, its caption says why
        return None


def _share(k: int, n: int) -> dict[str, Any]:
    return {"count": k, "of": n, "share": round(k / n, 3) if n else None}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run_real(
    folders: list[Path], size: int = 256, log: Callable[[str], None] = lambda _: None, sheet_out: Path | None = None
) -> dict[str, Any]:
    """Every set under the folders; with `sheet_out`, a contact sheet of the rejected photos (PNG)."""
    sheet: list[tuple[np.ndarray | None, str]] | None = [] if sheet_out is not None else None
    found = sets(folders)
    result = {
        "size": size,
        "threshold": gradability.DEFAULT_THRESHOLD,
        "features": len(gradability_features.FEATURES),
        "sets": [measure_set(f, size, log, sheet) for f in found],
    }
    if sheet_out is not None and sheet is not None:
        result["sheet"] = _write_sheet(sheet, sheet_out)
    return result


def _write_sheet(cells: list[tuple[np.ndarray | None, str]], out: Path) -> str | None:
    """The rejected photos with why; None (and no file) when nothing was rejected."""
    if not cells:
        return None
    import cv2

    from sightx.explore.sheet import contact_sheet
    from sightx.files.atomic import atomic_write_bytes

    img = contact_sheet([c for c, _ in cells], [t for _, t in cells], cols=min(6, len(cells)))
    ok, png = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    atomic_write_bytes(out, png.tobytes())
    return str(out)


def render(result: dict[str, Any], markdown: bool = False) -> str:
    """The figures as a table (Markdown for README)."""
    head = [
        "set",
        "photos",
        "no-fov",
        "other rejections",
        "r / short side (p5-p95)",
        "warned",
        "AUC gradable",
        "sens / spec",
        "CPU ms/photo (score)",
    ]
    rows = []
    for s in result["sets"]:
        g = s.get("gradability", {})
        other = sum(v for k, v in s["rejected"].items() if k != "no-fov")
        radius = s["circle"].get("radius_over_short_side_p5_p50_p95")
        auc = "-" if not g else f"{g['auc']}" + (f" (fitted here; CV {g['fitted_here']['cv_auc']})" if "fitted_here" in g else "")
        sens = "-" if not g else f"{g['sensitivity']['share']} / {g['specificity']['share']}"
        rows.append(
            [
                Path(s["folder"]).name,
                str(s["photos"]),
                str(s["no_fov"]),
                str(other),
                "-" if not radius else f"{radius[0]}-{radius[2]}",
                f"{s['warned']['count']} ({s['warned']['share']})",
                auc,
                sens,
                f"{s['ms_per_photo']} ({s['score_ms_per_photo']})",
            ]
        )
    title = f"sightx-bench real: --size {result['size']}, threshold {result['threshold']}, one process\n"
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths)) for r in [head, *rows]]
    return title + "\n".join(lines) + "\n"

"""Grade raw photos, folders and shards into a CSV, through the one grading path (sightx.inference.grader).

This module only expands inputs, runs preprocessing workers, batches, blends eyes and writes CSVs;
how a photo becomes a grade lives in sightx.inference.grader, shared with sightx-serve. Shards are read as
stored (already preprocessed).
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from sightx.contracts import sample
from sightx.errors import Rejection, SightXError, describe
from sightx.files.atomic import atomic_write_text
from sightx.files.names import recorded
from sightx.files.regular import NotARegularFile, not_a_file, read_regular
from sightx.image import codec
from sightx.image.gradability import score_of
from sightx.image.preprocess import PreprocessOptions
from sightx.inference.gradability_model import GradabilityModel
from sightx.inference.grader import Graded, Grader, Photo, preprocess_photo
from sightx.inference.warnings import photo_warnings
from sightx.labels.grades import NUM_GRADES, other_eye
from sightx.labels.ids import image_id, patient_eye
from sightx.parallel.supervise import bounded_map
from sightx.sources import Source, is_archive, open_source
from sightx.sources.folder import find_inputs

# Share of the other eye in a blended prediction (both eyes of a patient are strongly correlated).
OTHER_EYE_WEIGHT = 0.25


class SubmissionError(SightXError):
    """A sample submission file that has no image ids to write."""


class DuplicateIdError(SightXError):
    """Inputs that give one image id to more than one photo: a row per id could not say which is which."""


@dataclass(frozen=True)
class Item:
    """One input: a preprocessed photo, or why there is none."""

    image: str
    photo: Photo | None
    error: str = ""
    source: str = ""  # a shard sample's shard:key (raw inputs are named before grading)


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[Path], list[Source]]:
    """Split inputs into raw images, shard tars and archives of raw images (zip, split parts, the
    competition zip's test images, compressed tars); folders are searched recursively. A folder's
    entries named like photos that are not regular files (FIFOs, folders, dangling symlinks, loops)
    stay among the images, each to get its `not-a-file` row, never opened. A path given twice (or
    found again inside a folder also given) is one input."""
    images, shards, archives = [], [], []
    for p in paths:
        if not p.is_dir() and not_a_file(p) is not None:
            images.append(p)  # a FIFO named .zip or .tar too: its row says what it is
        elif is_archive(p):
            archives.append(open_source(p, unlabeled=True))
        elif p.is_dir():
            files, others = find_inputs(p)
            images += sorted(files + [q for q, _ in others])
            tars = sorted(p.rglob("*.tar"))
            shards += [q for q in tars if not_a_file(q) is None]
            images += [q for q in tars if not_a_file(q) is not None]  # a FIFO named .tar: its row, never opened
        elif p.suffix == ".tar":
            shards.append(p)
        else:
            images.append(p)
    return _once(images), _once(shards), archives


def _once(paths: list[Path]) -> list[Path]:
    seen: set[str] = set()
    kept = []
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept


def check_unique_ids(named: Iterable[tuple[str, str]]) -> None:
    """(image id, where it comes from) pairs; DuplicateIdError naming the ids that more than one input
    gives, and those inputs, in one line. Each id must name one photo: two rows of one id, or a
    submission that silently took one of them, would grade a photo under another's name."""
    where: dict[str, list[str]] = defaultdict(list)
    for image, source in named:
        where[image].append(source)
    dups = {image: sources for image, sources in where.items() if len(sources) > 1}
    if dups:
        shown = "; ".join(f"{image!r} from {', '.join(sorted(sources)[:3])}" for image, sources in sorted(dups.items())[:3])
        more = f" and {len(dups) - 3} more" if len(dups) > 3 else ""
        raise DuplicateIdError(
            f"{len(dups)} image id(s) name more than one input: {shown}{more}; rename one of each, or grade them in separate runs"
        )


def _image_of(name: str) -> str:
    return image_id(PurePosixPath(recorded(name)))


def _graded_input(name: str, data: bytes | Rejection, opts: PreprocessOptions) -> Item:
    """One raw image's bytes, preprocessed; errors become a row, not a crash."""
    image = _image_of(name)
    if isinstance(data, Rejection):
        return Item(image, None, str(data))
    try:
        return Item(image, preprocess_photo(data, opts))
    except Rejection as e:
        return Item(image, None, str(e))
    except Exception as e:  # one odd file must not stop a batch job
        return Item(image, None, f"error: {describe(e)}")


def _preprocess_file(args: tuple[str, PreprocessOptions]) -> Item:
    """Worker: read and preprocess one raw image file; anything but a regular file is never opened."""
    path, opts = args
    try:
        data: bytes | Rejection = read_regular(Path(path))
    except NotARegularFile as e:
        data = Rejection("not-a-file", e.what)
    except OSError as e:
        data = Rejection("unreadable", e.strerror or str(e))
    return _graded_input(Path(path).name, data, opts)


def _preprocess_member(args: tuple[Source, str, PreprocessOptions]) -> Item:
    """Worker: read one member of a random-access archive (opened once per worker) and preprocess it."""
    source, name, opts = args
    try:
        data: bytes | Rejection = source.read(name)
    except Rejection as e:
        data = e
    return _graded_input(name, data, opts)


def _preprocess_streamed(args: tuple[str, bytes | Rejection, PreprocessOptions]) -> Item:
    return _graded_input(*args)


def _archive_items(source: Source, opts: PreprocessOptions, workers: int) -> Iterator[Item]:
    """The images of an archive, in listing order for random access, archive order for a stream."""
    names = [m.name for m in source.members()]
    if source.random_access:
        yield from bounded_map(
            _preprocess_member,
            ((source, n, opts) for n in names),
            workers,
            lambda job, crash: _graded_input(job[1], crash, opts),
            name=lambda job: job[1],
        )
    else:
        jobs = ((n, data, opts) for n, data in source.stream(names))
        yield from bounded_map(
            _preprocess_streamed, jobs, workers, lambda job, crash: _graded_input(job[0], crash, opts), name=lambda job: job[0]
        )


def _shard_items(path: Path) -> Iterator[Item]:
    """Samples of a shard as stored (already preprocessed); a broken shard becomes an error row."""
    try:
        for key, parts in sample.read_samples(path):
            try:
                meta = sample.meta_of(parts)
            except sample.SampleError:
                meta = {}
            image = recorded(str(meta.get("image", key)))  # a shard's JSON is data from outside
            source = f"{path.name}:{recorded(key)}"
            try:
                yield Item(image, Photo(sample.image_of(parts), meta, tuple(photo_warnings(meta))), source=source)
            except sample.SampleError as e:
                yield Item(image, None, str(e), source)
    except (OSError, tarfile.TarError) as e:
        yield Item(recorded(path.name), None, f"unreadable shard: {e}")


@dataclass
class _Row:
    item: Item
    output: np.ndarray | None = None
    error: str = ""
    graded: Graded | None = None
    gradability: float | None = None  # the learned score (--gradability-model), when one is given


def predict(inputs: list[Path], checkpoint: Path, *, device: str = "auto", **kw: Any) -> list[dict[str, Any]]:
    """`grade_inputs` with the grader of a checkpoint file."""
    return grade_inputs(Grader(checkpoint, device), inputs, **kw)


def grade_inputs(
    grader: Grader,
    inputs: list[Path],
    *,
    batch_size: int = 32,
    workers: int = 1,
    blend_eyes: bool = False,
    progress: bool = True,
    gradability: GradabilityModel | None = None,
) -> list[dict[str, Any]]:
    """One row per input image: image, level, probabilities or score, warnings, error; with a
    `gradability` model also its score (`gradability_model`: 1 - P(Reject), 1 = gradable)."""
    if gradability is not None:
        gradability.check_preprocess(grader.preprocess, "the grading checkpoint's photos")
    raw, shards, archives = expand_inputs(inputs)
    check_unique_ids(
        [(_image_of(p.name), str(p)) for p in raw]
        + [(_image_of(m.name), f"{a.describe()[0]}:{m.name}") for a in archives for m in a.members()]
    )
    files = [(str(p), grader.preprocess) for p in raw]
    items = bounded_map(
        _preprocess_file,
        files,
        workers,
        lambda job, crash: _graded_input(Path(job[0]).name, crash, job[1]),
        name=lambda job: Path(job[0]).name,
    )
    from_archives = (_archive_items(a, grader.preprocess, workers) for a in archives)
    stream = (item for source in (items, *from_archives, *(_shard_items(s) for s in shards)) for item in source)
    rows: list[_Row] = []
    batch: list[_Row] = []
    bar = tqdm(desc="predict", unit="img", disable=not progress)

    def flush() -> None:
        ready, tensors = [], []
        for row in batch:
            if row.item.photo is None:
                row.error = row.item.error
                continue
            try:
                tensors.append(grader.tensor(row.item.photo.jpeg))
                ready.append(row)
            except codec.CodecError as e:  # a corrupt sample inside a shard
                row.error = f"corrupt sample: {e}"
        for row, out in zip(ready, grader.outputs(tensors)):
            row.output = out
        if gradability is not None:
            _score_gradability(gradability, ready)
        rows.extend(batch)
        bar.update(len(batch))
        batch.clear()

    for item in stream:
        batch.append(_Row(item))
        if len(batch) == batch_size:
            flush()
    flush()
    bar.close()
    check_unique_ids((r.item.image, r.item.source or "a photo") for r in rows)  # shards' samples too
    if blend_eyes:
        _blend(rows)
    return _table(rows, grader, gradability is not None)


def _score_gradability(model: GradabilityModel, rows: list[_Row]) -> None:
    """The learned gradability score of a batch's graded photos (their stored fields, already decodable)."""
    for row, score in zip(rows, model.score_jpegs([r.item.photo.jpeg for r in rows if r.item.photo is not None])):
        row.gradability = round(float(score), 6)


def _blend(rows: list[_Row]) -> None:
    """Mix in the other eye's output: lesions of one eye raise the odds for the other."""
    by_eye = {patient_eye(r.item.image): r.output for r in rows if r.output is not None}
    for r in rows:
        patient, eye = patient_eye(r.item.image)
        other = by_eye.get((patient, other_eye(eye)))
        if r.output is not None and other is not None:
            r.output = (1 - OTHER_EYE_WEIGHT) * r.output + OTHER_EYE_WEIGHT * other


def _table(rows: list[_Row], grader: Grader, with_gradability: bool = False) -> list[dict[str, Any]]:
    ready = [r for r in rows if r.output is not None and r.item.photo is not None]
    if ready:
        judged = grader.judge(np.stack([r.output for r in ready]), [r.item.photo for r in ready])  # type: ignore[misc]
        for r, judgement in zip(ready, judged):
            r.graded = judgement
    table = []
    for r in rows:
        g = r.graded
        row: dict[str, Any] = {"image": r.item.image, "level": "" if g is None else g.grade}
        if grader.head.width > 1:
            row.update({f"p{k}": "" if g is None else round(float(g.output[k]), 6) for k in range(NUM_GRADES)})
        else:
            row["score"] = "" if g is None else round(float(g.output), 6)
        score = None if g is None else score_of(g.photo.measures)
        row["gradability"] = "" if score is None else score  # empty too for shards written before the score
        if with_gradability:
            row["gradability_model"] = "" if r.gradability is None or g is None else r.gradability
        row["warnings"] = "" if g is None else " ".join(g.photo.warnings)
        row["error"] = r.error
        table.append(row)
    return table


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Kaggle's submission columns first (image,level), then probabilities, gradability, warnings and errors."""
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["image", "level", "gradability", "warnings", "error"]
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_submission_ids(path: Path) -> list[str]:
    """The image ids of a Kaggle sample submission (`image,level`), in its order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SubmissionError(f"cannot read {path}: {e.strerror or e}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "image" not in reader.fieldnames:
        raise SubmissionError(f"{path}: no 'image' column (a Kaggle sample submission is image,level)")
    ids = [row["image"].strip() for row in reader if (row.get("image") or "").strip()]
    if not ids:
        raise SubmissionError(f"{path}: no image ids")
    return ids


def submission(rows: list[dict[str, Any]], ids: list[str], fallback_grade: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Exactly Kaggle's `image,level` for every id, in the sample's order; ids without a graded photo
    get `fallback_grade` and are returned as missing."""
    levels = {r["image"]: r["level"] for r in rows if r["level"] != ""}
    missing = [i for i in ids if i not in levels]
    return [{"image": i, "level": levels.get(i, fallback_grade)} for i in ids], missing

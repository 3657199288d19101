"""The numbers about a shard folder: splits and class mix from the manifest, rejects, before/after samples.

Computes only; render.py turns the results into HTML and PNG. A shard folder may come from
anywhere: the manifest fields this report reads are checked first (one-line ExploreError naming the
field), and shard members are data, so a malformed sample or an unreadable shard is skipped and
recorded in the summary, never a traceback.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from sightx.contracts import manifest as mf
from sightx.contracts.sample import decode_sample, read_samples, sample_size
from sightx.errors import Rejection, describe
from sightx.explore.common import EXAMPLES, ExploreOptions, class_label, thumb, thumbnail
from sightx.explore.gradability import Scored, Shown, Tally, components
from sightx.explore.manifest_checks import rejects, split_stats
from sightx.image import codec
from sightx.image.gradability import score_of
from sightx.labels.kinds import GRADE, NAMES, QUALITY, classes
from sightx.sources import SourceError, is_archive, open_source
from sightx.sources.picked import Picked as Members


class Sample(NamedTuple):
    """A stored sample's metadata, its class (a grade, or a quality set's quality class), its
    preprocessed JPEG, and where it was read."""

    meta: dict[str, Any]
    label: int
    jpg: bytes
    shard: str
    key: str


Picked = tuple[dict[str, Any], np.ndarray]  # a sample's metadata and its JPEG decoded
ByGrade = dict[int, list[Picked]]  # class -> the samples picked
RawThumb = Callable[[str], "np.ndarray | None"]  # a sample's source name -> its raw photo's thumbnail


@dataclass
class Skips:
    """Shard samples (or whole shards) passed over as malformed: counted by reason, first few kept."""

    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, shard: str, key: str, why: Rejection) -> None:
        self.by_reason[why.reason] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"shard": shard, "key": key, "reason": why.reason, "detail": why.detail})

    def summary(self) -> dict[str, Any]:
        return {"count": sum(self.by_reason.values()), "by_reason": dict(sorted(self.by_reason.items())), "examples": self.examples}


@dataclass(frozen=True)
class BeforeAfter:
    """Raw photo beside stored sample, per grade: 2 x per_grade columns, one row per grade."""

    tiles: list[np.ndarray | None]
    captions: list[str]
    cols: int
    rows: int


@dataclass(frozen=True)
class ShardFindings:
    summary: dict[str, Any]  # summary.json's content, less `figures`
    before_after: BeforeAfter | None  # None when the gallery is skipped (the summary says why)
    least_gradable: list[Shown] = field(default_factory=list)  # lowest gradability score first


def analyse(path: Path, manifest: dict[str, Any], opts: ExploreOptions) -> ShardFindings:
    done = [s for s in manifest["shards"] if s.get("done")]
    s = manifest.get("summary", {})
    kind = mf.labels_of(manifest)
    summary: dict[str, Any] = {
        "kind": "shards",
        "folder": str(path),
        "labels": kind,
        "class_names": list(NAMES[kind]),
        "complete": bool(manifest.get("complete")),
        "preprocess": manifest["options"].get("preprocess"),
        "inputs": s.get("inputs"),
        "written": s.get("written"),
        "splits": split_stats(manifest),
        "shards": [{"name": x["name"], "split": x["split"], "count": x["count"], "grades": x["grades"]} for x in done],
        "pending_shards": [x["name"] for x in manifest["shards"] if not x.get("done")],
        "rejects": rejects(path, s),
    }
    summary["before_after"], gallery = before_after(path, done, opts, kind)
    summary["gradability"], least = gradability(path, done, opts, kind)
    return ShardFindings(summary, gallery, least)


# --- gradability --------------------------------------------------------------------


def gradability(path: Path, shards: list[dict[str, Any]], opts: ExploreOptions, kind: str = GRADE) -> tuple[dict[str, Any], list[Shown]]:
    """The gradability score over labelled samples (all, or about `opts.sample` from shards in seeded
    random order): its histogram, the share below the default threshold per class, the least gradable
    samples (their JPEGs decoded for the sheet). Shards written before the score say so in `note`."""
    skips = Skips()
    rng = np.random.default_rng([opts.seed, 4])
    tally: Tally[tuple[Sample, float]] = Tally(classes(kind))
    unscored = 0
    for i in rng.permutation(len(shards)):
        for sample in labelled_samples(mf.shard_file(path, shards[i]), skips, kind):
            score = score_of(sample.meta)
            if score is None:
                unscored += 1
            else:
                tally.add(score, sample.label, (sample, score))
        if opts.sample and len(tally.scores) + unscored >= opts.sample:
            break
    least: list[Shown] = []
    for sample, score in tally.lowest():
        try:
            img = decode_sample(sample.jpg)
        except codec.CodecError as e:
            skips.add(sample.shard, sample.key, e)
            continue
        least.append((Scored(str(sample.meta.get("image", "")), sample.label, score, components(sample.meta["gradability"])), img))
    summary = tally.summary(s for s, _ in least)
    summary["unscored"] = unscored
    summary["note"] = None
    if unscored and not tally.scores:
        summary["note"] = "These shards were written before sightx-shard recorded a gradability score: re-shard to see it."
    summary["skipped"] = skips.summary()
    return summary, least


# --- before and after --------------------------------------------------------------


def raw_root(raw: Path, sources: list[str]) -> Path | None:
    """The folder the shard sources are relative to: raw itself, or its Kaggle train/ subfolder."""
    for folder in (raw, raw / "train"):
        if any((folder / s).is_file() for s in sources):
            return folder
    return None


def before_after(
    path: Path, shards: list[dict[str, Any]], opts: ExploreOptions, kind: str = GRADE
) -> tuple[dict[str, Any], BeforeAfter | None]:
    """The gallery's summary and tiles (one row per class), or its summary saying why it is skipped."""
    skips = Skips()
    found = _before_after_inputs(path, shards, opts, skips, kind)
    if isinstance(found, str):
        return {"raw": opts.raw, "shown": 0, "note": found, "skipped": skips.summary()}, None
    samples, raw_thumb, where = found
    cols = 2 * opts.per_grade
    tiles: list[np.ndarray | None] = []
    captions: list[str] = []
    for grade, picked in sorted(samples.items()):
        for meta, img in picked:
            tiles += [raw_thumb(meta["source"]), img]
            name = class_label(kind, grade)
            captions += [f"{name} | {Path(meta['source']).stem}", f"{name} | preprocessed"]
        blank = cols - 2 * len(picked)  # a rare class may have fewer samples: keep one row per class
        tiles += [None] * blank
        captions += [""] * blank
    shown = sum(len(p) for p in samples.values())
    return {"raw": where, "shown": shown, "note": None, "skipped": skips.summary()}, BeforeAfter(tiles, captions, cols, len(samples))


def _before_after_inputs(
    path: Path, shards: list[dict[str, Any]], opts: ExploreOptions, skips: Skips, kind: str
) -> tuple[ByGrade, RawThumb, str] | str:
    """The samples to show, how to get their raw photos (from a folder, or the archive they were
    sharded from) and where those are; or why the gallery is skipped."""
    if opts.raw is None:
        return (
            "Skipped: pass --raw PATH (the folder or archive given to sightx-shard) to see raw photos beside their preprocessed versions."
        )
    samples = shard_samples(path, [s for s in shards if s["split"] != "test"], opts.per_grade, opts.seed, skips, kind)
    if not samples:
        if skips.by_reason:
            return f"Skipped: no usable labelled sample in the shards ({sum(skips.by_reason.values())} malformed, see skipped)."
        return "Skipped: the shards hold no labelled samples."
    sources = [m["source"] for picked in samples.values() for m, _ in picked]
    raw = Path(opts.raw)
    if raw.is_file() or is_archive(raw):
        return _archive_photos(raw, sources, samples)
    root = raw_root(raw, sources)
    if root is None:
        return f"Skipped: none of the sampled source files were found under {opts.raw} (or its train/ folder)."
    return samples, lambda name: thumbnail(root / name), str(root)


def _archive_photos(raw: Path, sources: list[str], samples: ByGrade) -> tuple[ByGrade, RawThumb, str] | str:
    """The raw photos of `sources` from the archive the shards were made from (their names are its
    member names), fetched in one pass when it is streamed; or why the gallery is skipped."""
    try:
        archive = open_source(raw)
        if not {m.name for m in archive.members()} & set(sources):
            return f"Skipped: none of the sampled source files are in {raw}."
        members = Members(archive)
        members.fetch(sources)
    except SourceError as e:
        return f"Skipped: {e}."
    return samples, lambda name: thumb(members.read(name), name), str(archive)


def shard_samples(path: Path, shards: list[dict[str, Any]], per_grade: int, seed: int, skips: Skips, kind: str = GRADE) -> ByGrade:
    """Up to per_grade seeded random decodable samples of each class, reading only as many shards as needed.

    Shards are stratified, so one or two usually hold every class; the rest of a large set is never read.
    """
    rng = np.random.default_rng([seed, 3])
    wanted = {g for s in shards for g, count in enumerate(s["grades"]) if count}
    found: dict[int, list[Sample]] = {}
    for i in rng.permutation(len(shards)):
        for sample in labelled_samples(mf.shard_file(path, shards[i]), skips, kind):
            found.setdefault(sample.label, []).append(sample)
        if all(len(found.get(g, [])) >= per_grade for g in wanted):
            break
    return {g: _decodable(found[g], rng.permutation(len(found[g])), per_grade, skips) for g in sorted(found)}


def _decodable(samples: list[Sample], order: np.ndarray, n: int, skips: Skips) -> list[Picked]:
    """The first n samples in `order` whose JPEG decodes, in stored order."""
    picked: list[tuple[int, Picked]] = []
    for j in order:
        sample = samples[j]
        try:
            picked.append((int(j), (sample.meta, decode_sample(sample.jpg))))
        except codec.CodecError as e:
            skips.add(sample.shard, sample.key, e)
        if len(picked) == n:
            break
    return [p for _, p in sorted(picked, key=lambda jp: jp[0])]


def labelled_samples(tar_path: Path, skips: Skips | None = None, kind: str = GRADE) -> Iterator[Sample]:
    """Every well-formed labelled sample of a shard (labelled with classes of `kind`), streamed in order.

    Malformed samples are recorded in `skips`; a shard that cannot be read (missing, truncated, not a
    tar) ends its stream with one 'unreadable-shard' skip, keeping the samples read before.
    """
    skips = skips if skips is not None else Skips()
    try:
        for key, parts in read_samples(tar_path):
            checked = check_sample(parts, kind)
            if isinstance(checked, Rejection):
                skips.add(tar_path.name, key, checked)
            elif checked is not None:
                yield Sample(*checked, tar_path.name, key)
    except (OSError, EOFError, tarfile.TarError) as e:
        skips.add(tar_path.name, "", Rejection("unreadable-shard", describe(e)))


def _safe_source(source: object) -> bool:
    """A path relative to the raw folder that stays inside it: shard metadata is data."""
    if not isinstance(source, str) or not source or "\x00" in source or "\\" in source:
        return False
    p = PurePosixPath(source)
    return not p.is_absolute() and ".." not in p.parts


def check_sample(parts: dict[str, bytes], kind: str = GRADE) -> tuple[dict[str, Any], int, bytes] | Rejection | None:
    """A labelled sample ready to show (metadata, class, JPEG), a Rejection saying what is wrong with
    it, or None if unlabelled. The class is the JSON's `grade`, or in a quality set its `quality`
    (sightx.contracts.sample), and `.cls` must agree with it."""
    if "json" not in parts or "jpg" not in parts:
        return Rejection("incomplete-sample", f"members {', '.join(sorted(parts)) or 'none'}")
    try:
        meta = json.loads(parts["json"])
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Rejection("bad-json", describe(e))
    if not isinstance(meta, dict):
        return Rejection("bad-json", f"not an object but {type(meta).__name__}")
    key = QUALITY if kind == QUALITY else "grade"
    grade = meta.get(key)
    if grade is None:
        return None
    if not isinstance(grade, int) or isinstance(grade, bool) or not 0 <= grade < classes(kind):
        return Rejection("bad-grade", f".json {key} is {str(grade)[:40]!r}, not 0-{classes(kind) - 1}")
    if "cls" in parts:
        try:
            cls = int(parts["cls"])
        except ValueError:
            return Rejection("bad-cls", f".cls is {parts['cls'][:40]!r}, not an integer")
        if cls != grade:
            return Rejection("bad-cls", f".cls says {cls}, .json says {grade}")
    if not _safe_source(meta.get("source")):
        return Rejection("bad-source", f"source {str(meta.get('source'))[:60]!r} is not a relative path inside the raw folder")
    try:
        sample_size(parts["jpg"])
    except codec.CodecError as e:
        return e
    return meta, grade, parts["jpg"]

"""sightx-verify: a shard folder checked against its manifest, so a copied, downloaded or ageing set is
known good (or exactly how it is not) before hours of training are spent on it.

Fast checks read each shard once: present, size, sha256, member count, unique keys, per-grade counts.
`deep` also decodes every image (through the pixel limit) and checks every sample's JSON.
`check_files` is the part that costs no reading at all (presence and size), which the trainer runs.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from sightx.contracts import manifest as mf
from sightx.contracts import sample as smp
from sightx.errors import Rejection, describe
from sightx.labels.kinds import GRADE, QUALITY, classes

SHOWN = 20  # problems listed in the printed report; all are counted


@dataclass(frozen=True)
class Problem:
    shard: str
    what: str
    key: str = ""  # the sample, or "" for the shard as a whole

    def __str__(self) -> str:
        return f"{self.shard}{f' {self.key}' if self.key else ''}: {self.what}"


@dataclass
class Report:
    deep: bool
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Hashing:
    """A read-only stream that hashes what is read through it, so one pass both parses and hashes."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha256.update(data)
        return data

    def finish(self) -> str:
        while self.read(1 << 20):
            pass
        return self.sha256.hexdigest()


def check_files(shard_dir: Path, records: list[dict[str, Any]]) -> list[Problem]:
    """Each finished shard present with the manifest's size: a stat per shard, nothing read."""
    problems = []
    for rec in records:
        path = mf.shard_file(shard_dir, rec)
        try:
            size = path.stat().st_size
        except OSError as e:
            problems.append(Problem(rec["name"], f"missing ({e.strerror or e})"))
            continue
        if not path.is_file():
            problems.append(Problem(rec["name"], "not a regular file"))
        elif size != rec["bytes"]:
            problems.append(Problem(rec["name"], f"{size} bytes, the manifest says {rec['bytes']}"))
    return problems


def verify(shard_dir: Path, *, deep: bool = False, progress: bool = False) -> Report:
    """Every shard of the manifest in `shard_dir` against its record; ManifestError if there is no usable manifest."""
    manifest = mf.read(shard_dir)
    shard_dir = shard_dir if shard_dir.is_dir() else shard_dir.parent  # given the manifest file itself
    records = [s for s in manifest["shards"] if s.get("done")]
    report = Report(deep)
    unfinished = len(manifest["shards"]) - len(records)
    if unfinished or not manifest.get("complete", False):
        report.problems.append(Problem(mf.MANIFEST, f"{unfinished} of {len(manifest['shards'])} shards unfinished: re-run sightx-shard"))
    listed = {s["name"] for s in manifest["shards"]}
    for stray in sorted(p.name for p in shard_dir.iterdir() if mf.SHARD_NAME.fullmatch(p.name) and p.name not in listed):
        report.problems.append(Problem(stray, "not in the manifest (a stock webdataset glob would read it)"))
    size = mf.output_size(manifest)
    limit = mf.sample_pixel_limit(manifest, smp.MAX_SAMPLE_PIXELS)
    missing = check_files(shard_dir, records)
    report.problems += missing
    absent = {p.shard for p in missing if p.what.startswith(("missing", "not a regular"))}
    todo = [r for r in records if r["name"] not in absent]
    bar = tqdm(total=sum(r["bytes"] for r in todo), unit="B", unit_scale=True, desc="verify", disable=not progress)
    for rec in todo:
        samples, problems = _check_shard(mf.shard_file(shard_dir, rec), rec, size, limit, deep, mf.labels_of(manifest))
        report.shards += 1
        report.samples += samples
        report.bytes += rec["bytes"]
        report.problems += problems
        bar.update(rec["bytes"])
    bar.close()
    return report


def _check_shard(
    path: Path, rec: dict[str, Any], size: int | None, max_pixels: int, deep: bool, labels: str = GRADE
) -> tuple[int, list[Problem]]:
    """(samples read, problems) for one shard, read once; `labels`: what the set's classes are."""
    name, labelled = rec["name"], rec["split"] != "test"
    problems: list[Problem] = []
    others: list[str] = []
    keys: Counter[str] = Counter()
    grades = [0] * classes(labels)
    members = 0
    try:
        with open(path, "rb") as f:
            stream = _Hashing(f)
            for key, parts in smp.read_samples(stream, others.append):  # type: ignore[arg-type]
                keys[key] += 1
                members += len(parts)
                grade, what = _check_sample(key, parts, rec["split"], labelled, size, max_pixels, deep, labels)
                if grade is not None:
                    grades[grade] += 1
                problems += [Problem(name, w, key) for w in what]
            sha256 = stream.finish()
    except (OSError, EOFError, tarfile.TarError) as e:
        problems.append(Problem(name, f"unreadable: {e if isinstance(e, Rejection) else describe(e)}"))
        return sum(keys.values()), problems
    if sha256 != rec["sha256"]:
        problems.append(Problem(name, "sha256 differs from the manifest's"))
    n = sum(keys.values())
    if n != rec["count"]:
        problems.append(Problem(name, f"{n} samples, the manifest says {rec['count']}"))
    expected = 2 * rec["count"] + (sum(rec["grades"]) if labelled else 0)
    if members + len(others) != expected:
        problems.append(Problem(name, f"{members + len(others)} members, {expected} expected for {rec['count']} samples"))
    if others:
        problems.append(Problem(name, f"{len(others)} member(s) no sample has, e.g. {others[0][:80]!r}"))
    dup = [k for k, c in keys.items() if c > 1]
    if dup:
        problems.append(Problem(name, f"{len(dup)} key(s) appear more than once, e.g. {dup[0]!r}"))
    if labelled and grades != rec["grades"]:
        problems.append(Problem(name, f"grades {grades}, the manifest says {rec['grades']}"))
    return n, problems


def _check_sample(
    key: str, parts: dict[str, bytes], split: str, labelled: bool, size: int | None, max_pixels: int, deep: bool, labels: str = GRADE
) -> tuple[int | None, list[str]]:
    """The sample's class (None if it has none or a bad one) and what is wrong with it."""
    what: list[str] = []
    expected = {smp.IMAGE, smp.META} | ({smp.GRADE} if labelled else set())
    if set(parts) != expected:
        what.append(f"members {', '.join(sorted(parts))}, expected {', '.join(sorted(expected))}")
    grade = None
    try:
        grade = smp.grade_of(parts, classes(labels))
    except Rejection as e:
        what.append(e.detail)
    if not deep:
        return grade, what
    try:
        image = smp.decode_sample(smp.image_of(parts), max_pixels)
        if size is not None and image.shape[:2] != (size, size):
            what.append(f"image is {image.shape[1]}x{image.shape[0]}, the set's size is {size}x{size}")
    except Rejection as e:
        what.append(str(e))
    try:
        meta = smp.meta_of(parts)
    except Rejection as e:
        return grade, what + [e.detail]
    lacking = [k for k in smp.META_KEYS if k not in meta]
    if lacking:
        what.append(f".json lacks {', '.join(lacking)}")
    # The class .cls holds is the JSON's grade, or in a quality set its quality (its grade is null there).
    facts = [("key", key), ("split", split)] + ([(labels, grade)] if grade is not None or not labelled else [])
    if labels == QUALITY:
        facts.append(("grade", None))
    for field_, want in facts:
        if field_ in meta and meta[field_] != want:
            what.append(f".json {field_} is {str(meta[field_])[:40]!r}, not {want!r}")
    return grade, what


def format_report(report: Report, shard_dir: Path) -> str:
    """The printed summary: a verdict line, then the first SHOWN problems."""
    checks = "size, sha256, members, keys, grades" + (", every image decoded, every .json checked" if report.deep else "")
    head = f"{shard_dir}: {report.shards} shard(s), {report.samples} sample(s), {report.bytes / 1e6:.1f} MB checked ({checks}): "
    if report.ok:
        return head + "OK"
    lines = [head + f"{len(report.problems)} problem(s)"] + [f"  {p}" for p in report.problems[:SHOWN]]
    if len(report.problems) > SHOWN:
        lines.append(f"  and {len(report.problems) - SHOWN} more")
    return "\n".join(lines)

"""shards/manifest.json: the versioned contract between the shard engine and everything that reads shards.

It records how the shards were made (options, so prediction can replay the preprocessing),
what each shard holds (counts per grade, bytes, sha256, so a resume can trust or redo it),
and per-split class counts and weights for training-time balancing.

What the class labels are is the manifest's `labels` (sightx.labels.kinds): absent means DR grades, as
every version-1 manifest is; a set labelled with image-quality classes (EyeQ) says `"labels": "quality"`,
its count lists have one entry per quality class, and it is written as version 2, so a SightX from
before quality labels refuses it instead of training a DR grader on quality classes. DR sets are
still written as version 1, byte for byte as before.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sightx.contracts.rejects import Reject
from sightx.errors import SightXError, one_line
from sightx.files.atomic import atomic_write_text
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.kinds import GRADE, KINDS, classes

FORMAT = "sightx-shards"
VERSION = 2  # the newest this SightX reads; `version_for` says which one a set is written as
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
# The only shard names a manifest may hold. Names are data read from a file someone else may have
# written: anything else (a URL, "pipe:cmd", an absolute path, "../x") is refused, never opened.
SHARD_NAME = re.compile(r"(?:train|val|test)-[0-9]{6}\.tar")
# Cui et al. 2019, "Class-balanced loss based on effective number of samples".
EFFECTIVE_BETA = 0.999


class ManifestError(SightXError, ValueError):
    """A manifest we cannot trust: wrong format, newer version, missing fields, inconsistent counts."""


def class_weights(counts: list[int]) -> dict[str, list[float]]:
    """Per-grade weights, normalised so the mean weight over the split's samples is 1.

    `inverse`: n / (k * n_c). `effective`: 1 / E_c with E_c = (1 - beta^n_c) / (1 - beta), which
    tempers inverse frequency for large classes. Grades without samples get 0.
    """
    n = np.asarray(counts, np.float64)
    present = n > 0
    total = n.sum()
    inverse = np.zeros_like(n)
    effective = np.zeros_like(n)
    if total:
        inverse[present] = total / (present.sum() * n[present])
        eff_num = (1 - EFFECTIVE_BETA ** n[present]) / (1 - EFFECTIVE_BETA)
        effective[present] = 1 / eff_num
        effective *= total / float((effective * n).sum())
    return {"inverse": [round(float(w), 6) for w in inverse], "effective": [round(float(w), 6) for w in effective]}


def version_for(labels: str) -> int:
    """Version 1 for DR grades (unchanged since it), 2 for the `labels` field a quality set needs."""
    return 1 if labels == GRADE else 2


def labels_of(manifest: dict[str, Any]) -> str:
    """What the set's classes are (a label kind; grades when the manifest does not say)."""
    return str(manifest.get("labels", GRADE))


def num_classes(manifest: dict[str, Any]) -> int:
    return classes(labels_of(manifest))


def shard_record(name: str, split: str, digest: str, planned: int, done: dict[str, Any] | None) -> dict[str, Any]:
    """One shard's entry: planned only, or with what was written (`done`: count, grades, bytes,
    sha256, input_bytes and its rejects, kept so a resume can account for them without the shard)."""
    record: dict[str, Any] = {"name": name, "split": split, "digest": digest, "planned": planned, "done": done is not None}
    if done is not None:
        record.update({k: v for k, v in done.items() if k != "rejects"})
        record["rejects"] = [r.to_list() for r in done["rejects"]]
    return record


def split_record(split: str, shards: int, count: int, grades: list[int], planned: list[int]) -> dict[str, Any]:
    """One split's entry; class weights from the planned (labelled) counts: the numbers each sample's .json carries
    (none for the unlabelled test split)."""
    return {
        "shards": shards,
        "count": count,
        "grades": grades,
        "planned_grades": planned,
        "class_weights": class_weights(planned) if split != "test" else None,
    }


def document(
    *,
    options: dict[str, Any],
    shards: list[dict[str, Any]],
    splits: dict[str, dict[str, Any]],
    rejects: list[Reject],
    n_inputs: int,
    labels_without_image: list[str],
    labels: str = GRADE,
) -> dict[str, Any]:
    """The manifest document (its deterministic part: the engine adds a `run` block of timings).
    `labels` is written only when it is not DR grades, so a DR set's manifest is what it always was."""
    return {
        "format": FORMAT,
        "version": version_for(labels),
        **({"labels": labels} if labels != GRADE else {}),
        "complete": all(s["done"] for s in shards),
        "options": options,
        "shards": shards,
        "splits": splits,
        "summary": {
            "inputs": n_inputs,
            "written": sum(s.get("count", 0) for s in shards),
            "rejected": len(rejects),
            "rejected_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
            "labels_without_image": labels_without_image,
        },
    }


def write(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read(path: Path) -> dict[str, Any]:
    """Load and validate a manifest (a file or the shard folder holding one)."""
    if not path.exists():
        raise ManifestError(f"{path} does not exist")
    if path.is_dir():
        path = path / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path} not found: is this a folder written by sightx-shard?") from None
    except OSError as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from None
    return parse(raw, str(path))


def parse(raw: bytes, path: str) -> dict[str, Any]:
    """Validate a manifest's bytes, read from `path` (a file or a URL: only named in messages)."""
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a SightX shard manifest")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise ManifestError(f"{path}: manifest version {data.get('version')} is newer than this SightX ({VERSION})")
    for key in ("options", "shards", "splits"):
        if key not in data:
            raise ManifestError(f"{path}: manifest lacks {key!r}")
    if data.get("labels", GRADE) not in KINDS:
        raise ManifestError(f"{path}: manifest field labels is {str(data.get('labels'))[:40]!r}, not one of {', '.join(KINDS)}")
    problem = _inconsistency(data)
    if problem:
        raise ManifestError(f"{path}: manifest field {problem}")
    return data


def _counts(value: Any, n: int | None) -> bool:
    """A list of non-negative integer counts (of length n when given)."""
    return (
        isinstance(value, list)
        and (n is None or len(value) == n)
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)
    )


def _inconsistency(data: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's shard records and split counts, or None.

    The options' preprocessing must be valid: the trainer copies it into every checkpoint.
    Names are checked first among the shards: they are the one field a reader would act on (open a file).
    Counts must add up, so an edited or lying manifest cannot steer class weights or a resume.
    """
    if not isinstance(data["options"], dict):
        return f"options is {data['options']!r}, not an object"
    if not isinstance(data["options"].get("preprocess"), dict):
        return f"options.preprocess is {data['options'].get('preprocess')!r}, not an object"
    try:  # replayed by every checkpoint trained on the set
        PreprocessOptions.from_dict(data["options"]["preprocess"])
    except (TypeError, ValueError) as e:
        return f"options.preprocess is not valid preprocessing options ({one_line(str(e))})"
    n = num_classes(data)
    if not isinstance(data["shards"], list):
        return "'shards' is not a list"
    if not isinstance(data["splits"], dict):
        return "'splits' is not an object"
    done_grades: dict[str, list[int]] = {}
    for i, record in enumerate(data["shards"]):
        if not isinstance(record, dict):
            return f"shards[{i}] is not an object"
        name = record.get("name")
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
            return f"shards[{i}].name is {name!r}, not a SightX shard name ({{split}}-NNNNNN.tar)"
        if record.get("split") not in SPLITS or not name.startswith(f"{record['split']}-"):
            return f"shards[{i}].split is {record.get('split')!r}, which does not match {name!r}"
        if not isinstance(record.get("digest"), str):
            return f"shards[{i}].digest is missing"
        if not record.get("done"):
            continue
        for key in ("count", "bytes", "input_bytes"):
            if not _counts([record.get(key)], None):
                return f"shards[{i}].{key} is {record.get(key)!r}, not a count"
        if not _counts(record.get("grades"), n) or sum(record["grades"]) > record["count"]:
            return f"shards[{i}].grades is {record.get('grades')!r}: not {n} counts adding up to at most its count"
        if not isinstance(record.get("sha256"), str) or not isinstance(record.get("rejects"), list):
            return f"shards[{i}] lacks its sha256 or rejects"
        totals = done_grades.setdefault(record["split"], [0] * n)
        for g, c in enumerate(record["grades"]):
            totals[g] += c
    for split, info in data["splits"].items():
        if split not in SPLITS or not isinstance(info, dict) or not _counts(info.get("grades"), n):
            return f"splits.{split}.grades is not {n} non-negative counts"
        if info["grades"] != done_grades.get(split, [0] * n):
            return f"splits.{split}.grades {info['grades']} differs from the sum over its finished shards"
    return None


def output_size(manifest: dict[str, Any]) -> int | None:
    """The side of the set's stored squares as its options say, or None when they do not say it plainly."""
    options = manifest.get("options")
    pre = options.get("preprocess") if isinstance(options, dict) else None
    size = pre.get("size") if isinstance(pre, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def sample_pixel_limit(manifest: dict[str, Any], ceiling: int) -> int:
    """The most pixels a stored image of this set may have: its output square, at most `ceiling`
    (the options are whatever the manifest says, so an absurd size cannot raise the limit)."""
    size = output_size(manifest)
    return ceiling if size is None else min(size * size, ceiling)


def shards_of(manifest: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """The finished shards of one split, in order."""
    return [s for s in manifest["shards"] if s["split"] == split and s.get("done")]


def shard_name(record: dict[str, Any]) -> str:
    """A shard record's file name, checked again where it is used: only ever `{split}-NNNNNN.tar`."""
    name = record.get("name")
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        raise ManifestError(f"manifest field 'name' is {name!r}, not a SightX shard name ({{split}}-NNNNNN.tar)")
    return name


def shard_file(shard_dir: Path, record: dict[str, Any]) -> Path:
    """The local file of a shard record: a plain name joined to the (absolute) shard folder.

    The result is absolute, so no reader (webdataset's `gopen` included) can take it for a URL or a
    `pipe:` command, whatever folder the user runs from.
    """
    return shard_dir.absolute() / shard_name(record)


def require_labels(manifest: dict[str, Any], wanted: str, where: str | Path, use: str) -> None:
    """ManifestError unless the set's labels are of kind `wanted` (`use` says what needs them)."""
    have = labels_of(manifest)
    if have != wanted:
        hint = "--task gradability" if have != GRADE else "--task grade (the default)"
        raise ManifestError(
            f"{where}: these shards are labelled with {have} classes, not {wanted}: {use} needs {wanted} labels ({hint} trains on these)"
        )

"""Plan the shards: which sample goes into which shard, decided before any pixel is decoded.

Pure: the same inputs and options give the same plan, so any executor can build any shard at
any time (resume, retry, a cluster later) and the output is byte-identical.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import numpy as np

from sightx.contracts.manifest import class_weights
from sightx.contracts.rejects import Reject
from sightx.labels.grades import NUM_GRADES
from sightx.labels.ids import image_id, patient_eye, sample_key
from sightx.labels.split import split_patients


@dataclass(frozen=True)
class SampleRef:
    """One input image and everything known about it before decoding."""

    source: str  # the member's path inside the source (relative to a folder, or inside an archive)
    image: str
    key: str
    patient: str
    eye: str | None
    grade: int | None
    other_eye: str | None
    weight: float | None
    weight_effective: float | None


@dataclass(frozen=True)
class ShardTask:
    """A picklable unit of work: one output shard."""

    split: str
    index: int
    samples: tuple[SampleRef, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"

    @functools.cached_property
    def digest(self) -> str:
        """Identifies the shard's planned content: a resume reuses a shard only if this matches.
        Cached (and pickled along to the worker): planning and building both need it."""
        payload = json.dumps([asdict(s) for s in self.samples], sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


@dataclass
class Plan:
    tasks: list[ShardTask]
    rejects: list[Reject]  # decided at planning time (no label, duplicate id)
    labels_without_image: list[str]
    split_counts: dict[str, list[int]] = field(default_factory=dict)  # planned samples per grade


def make_plan(
    sources: list[str],
    labels: dict[str, int] | None,
    *,
    shard_size: int,
    val_fraction: float,
    seed: int,
    unlabeled: bool,
    ungradable: frozenset[str] = frozenset(),
    classes: int = NUM_GRADES,
) -> Plan:
    """Assign every input (member names, in listing order) to a split and a shard, or to a planning-time
    rejection; `ungradable`: ids the label file grades ungradable (DDR's 5), never trained on; `classes`:
    how many classes the labels have (5 grades; 3 for EyeQ's quality classes, which split and stratify alike)."""
    rejects: list[Reject] = []
    labelled: dict[str, tuple[str, int]] = {}  # image id -> (source, grade)
    unlabelled: dict[str, str] = {}
    seen: dict[str, str] = {}
    for source in sources:
        image = image_id(PurePosixPath(source))
        key = sample_key(image)
        if key in seen:
            rejects.append(Reject(source, image, "duplicate-id", f"same id as {seen[key]}"))
            continue
        seen[key] = source
        if image in ungradable:
            rejects.append(Reject(source, image, "ungradable-label", "graded ungradable in the label file"))
        elif labels is not None and image in labels:
            labelled[image] = (source, labels[image])
        elif unlabeled:
            unlabelled[image] = source
        else:
            rejects.append(Reject(source, image, "no-label", "image id not in the label file"))

    patient_grade: dict[str, int] = {}
    for image, (_, grade) in labelled.items():
        patient = patient_eye(image)[0]
        patient_grade[patient] = max(grade, patient_grade.get(patient, 0))
    split = split_patients(patient_grade, val_fraction, seed)

    by_split: dict[str, list[tuple[str, str, int | None]]] = {"train": [], "val": [], "test": []}
    for image, (source, grade) in labelled.items():
        by_split["val" if patient_eye(image)[0] in split.val else "train"].append((image, source, grade))
    by_split["test"] = [(image, source, None) for image, source in unlabelled.items()]
    keys_by_patient_eye = {patient_eye(i): sample_key(i) for i in list(labelled) + list(unlabelled)}

    tasks: list[ShardTask] = []
    split_counts: dict[str, list[int]] = {}
    for name, members in by_split.items():
        if not members:
            continue
        counts = Counter(g for _, _, g in members if g is not None)
        split_counts[name] = [counts.get(g, 0) for g in range(classes)]
        weights = class_weights(split_counts[name]) if name != "test" else None

        def ref(image: str, source: str, grade: int | None) -> SampleRef:
            patient, eye = patient_eye(image)
            other = keys_by_patient_eye.get((patient, {"left": "right", "right": "left"}.get(eye or "", "")))
            return SampleRef(
                source,
                image,
                sample_key(image),
                patient,
                eye,
                grade,
                other,
                None if weights is None or grade is None else weights["inverse"][grade],  # noqa: B023 (called in this iteration)
                None if weights is None or grade is None else weights["effective"][grade],  # noqa: B023
            )

        refs = [ref(*m) for m in sorted(members)]
        tasks += _stratified_shards(name, refs, shard_size, np.random.default_rng([seed, list(by_split).index(name), 0xC0FFEE]))
    labels_without_image = sorted(set(labels or {}) - set(labelled)) if labels is not None else []
    return Plan(tasks, rejects, labels_without_image, split_counts)


def _stratified_shards(split: str, refs: list[SampleRef], shard_size: int, rng: np.random.Generator) -> list[ShardTask]:
    """Deal each grade's shuffled samples round-robin over the shards, then shuffle each shard.

    Dealing the grades one after another with a running counter gives every shard the split's
    class mix within one sample per class and sizes within one sample of each other.
    """
    n_shards = max(1, math.ceil(len(refs) / shard_size))
    by_grade: dict[int, list[SampleRef]] = {}
    for r in refs:
        by_grade.setdefault(-1 if r.grade is None else r.grade, []).append(r)
    dealt: list[list[SampleRef]] = [[] for _ in range(n_shards)]
    i = 0
    for grade in sorted(by_grade):
        members = by_grade[grade]
        for j in rng.permutation(len(members)):
            dealt[i % n_shards].append(members[j])
            i += 1
    tasks = []
    for index, members in enumerate(dealt):
        order = rng.permutation(len(members))
        tasks.append(ShardTask(split, index, tuple(members[j] for j in order)))
    return tasks

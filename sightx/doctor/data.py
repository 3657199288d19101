"""Data: for each DATA path, what it is, the images and labels found and how they disagree, the
damage in its archives, and whether the disk holds the shards it would make and its extraction;
and the Kaggle token when a download is planned.

A path is read by sightx.sources.survey, the way sightx-shard reads it: what the doctor says is
wrong with a download is what sharding it would stop on, in the same words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sightx.doctor import system
from sightx.doctor.check import FAIL, OK, WARN, Check
from sightx.doctor.context import Context
from sightx.doctor.token import find_token
from sightx.sources.survey import Survey, survey

SECTION = "data"
KINDS = {
    "folder": "folder",
    "zip": "zip",
    "split-zip": "byte-split zip parts",
    "competition": "the Kaggle competition zip",
    "tar": "tar",
}


def checks(ctx: Context) -> Iterator[Check]:
    for path in ctx.data:
        yield from path_checks(path, ctx)
    if ctx.download or not ctx.data:
        yield token_check(ctx.download)


def _examples(ids: set[str]) -> str:
    shown = sorted(ids)[:3]
    return ", ".join(shown) + (", ..." if len(ids) > 3 else "")


def path_checks(path: Path, ctx: Context) -> Iterator[Check]:
    found = survey(path)
    name = str(path)
    if not found.kind:
        for problem in found.problems:
            yield Check(SECTION, name, FAIL, problem)
        return
    n = len(found.images)
    test = f", {found.test_images} test" if found.test_images else ""
    data = {
        "kind": found.kind,
        "images": n,
        "test_images": found.test_images,
        "labels": len(found.labels or ()),
        "bytes": found.stored_bytes,
    }
    status = OK if n else WARN
    yield Check(
        SECTION,
        name,
        status,
        f"{KINDS[found.kind]}: {n} image(s){test}; {_labels(found)}",
        "" if n else "pass the folder or archive that holds train/",
        data,
    )
    for problem in found.problems:
        yield Check(SECTION, name, FAIL, problem)
    for note in found.notes:
        yield Check(SECTION, name, WARN, note, "install SightX's packages (packages above), then run the doctor again")
    yield from _agreement(found, name)
    if found.empty_images:
        yield Check(
            SECTION, name, WARN, f"{found.empty_images} empty (0-byte) image file(s): sightx-shard rejects them", "download them again"
        )
    yield from _disk(found, ctx, name)


def _labels(found: Survey) -> str:
    if found.labels is not None:
        return f"labels {found.label_source} ({len(found.labels)})"
    return f"labels {found.label_source} (not read)" if found.label_source else "no label file"


def _agreement(found: Survey, name: str) -> Iterator[Check]:
    if found.labels is None or not found.images:
        return
    images = set(found.images)
    no_image = found.labels - images
    no_label = images - found.labels
    if no_label:
        yield Check(
            SECTION,
            name,
            WARN,
            f"{len(no_label)} image(s) without a label ({_examples(no_label)}): sightx-shard rejects them as no-label",
            "sightx-shard --unlabeled keeps them as a test split",
        )
    if no_image:
        yield Check(
            SECTION,
            name,
            WARN,
            f"{len(no_image)} label(s) without an image ({_examples(no_image)}): a partial copy?",
            "check the download is complete",
        )
    if not no_label and not no_image:
        yield Check(SECTION, name, OK, f"every image has a label and every label an image ({len(images)})")


def _disk(found: Survey, ctx: Context, name: str) -> Iterator[Check]:
    per_image, how = ctx.bytes_per_image()
    need = int((len(found.images) + found.test_images) * per_image)
    free = system.free_bytes(ctx.out)
    where = system.existing_parent(ctx.out)
    data = {"shard_bytes": need, "free": free, "bytes_per_image": round(per_image), "out": str(ctx.out)}
    estimate = f"about {system.human(need)} ({system.human(per_image)}/image, {how})"
    detail = f"shards at --size {ctx.size}: {estimate}; {system.human(free)} free at {where}"
    if need > free:
        yield Check(
            SECTION, name, FAIL, detail, f"free {system.human(need - free)} at {where}, or sightx-shard ... OUT on a larger disk", data
        )
    else:
        yield Check(SECTION, name, OK, detail, data=data)
    if found.extract_bytes:
        free_here = system.free_bytes(found.path.parent)
        text = f"extracting it would need {system.human(found.extract_bytes)}; {system.human(free_here)} free beside it"
        if found.extract_bytes > free_here:
            yield Check(
                SECTION,
                name,
                WARN,
                text,
                "no need to extract it: sightx-shard reads the archive in place",
            )
        else:
            yield Check(SECTION, name, OK, text, data={"extract_bytes": found.extract_bytes, "free": free_here})


def token_check(planned: bool) -> Check:
    """A token problem is a fail when a download is planned (--download), a warn otherwise."""
    token = find_token()
    if token.ok:
        return Check(SECTION, "kaggle token", OK, f"Kaggle API token from {token.source}")
    return Check(SECTION, "kaggle token", FAIL if planned else WARN, token.problem, token.fix)

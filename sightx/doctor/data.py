"""Data: for each DATA path, what it is, the images and labels found and how they disagree, the
damage in its archives, and whether the disk holds the shards it would make and its extraction;
and the Kaggle token when a download is planned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sightx.doctor import system
from sightx.doctor.archives import FAIL, WARN, Listing, inspect
from sightx.doctor.check import OK, Check
from sightx.doctor.context import Context
from sightx.doctor.token import find_token

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
    listing = inspect(path)
    name = str(path)
    if listing.kind in ("missing", "unknown"):
        for p in listing.problems:
            yield Check(SECTION, name, p.status, p.text, p.fix)
        return
    n = len(listing.images)
    labels = f"labels {listing.label_source} ({len(listing.labels)})" if listing.labels is not None else "no trainLabels.csv"
    test = f", {listing.test_images} test" if listing.test_images else ""
    data = {
        "kind": listing.kind,
        "images": n,
        "test_images": listing.test_images,
        "labels": len(listing.labels or ()),
        "bytes": listing.stored_bytes,
    }
    status = OK if n else WARN
    yield Check(
        SECTION,
        name,
        status,
        f"{KINDS[listing.kind]}: {n} image(s){test}; {labels}",
        "" if n else "pass the folder or archive that holds train/",
        data,
    )
    for p in listing.problems:
        yield Check(SECTION, name, p.status, p.text, p.fix)
    yield from _agreement(listing, name)
    if listing.empty_images:
        yield Check(
            SECTION, name, WARN, f"{listing.empty_images} empty (0-byte) image file(s): sightx-shard rejects them", "download them again"
        )
    yield from _disk(listing, ctx, name)


def _agreement(listing: Listing, name: str) -> Iterator[Check]:
    if listing.labels is None or not listing.images:
        return
    images = set(listing.images)
    no_image = listing.labels - images
    no_label = images - listing.labels
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


def _disk(listing: Listing, ctx: Context, name: str) -> Iterator[Check]:
    per_image, how = ctx.bytes_per_image()
    need = int((len(listing.images) + listing.test_images) * per_image)
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
    if listing.extract_bytes:
        free_here = system.free_bytes(listing.path.parent)
        text = f"extracting it would need {system.human(listing.extract_bytes)}; {system.human(free_here)} free beside it"
        if listing.extract_bytes > free_here:
            yield Check(
                SECTION,
                name,
                WARN,
                text,
                "extract it on a larger disk, or shard straight from the archive once sightx-shard reads archives",
            )
        else:
            yield Check(SECTION, name, OK, text, data={"extract_bytes": listing.extract_bytes, "free": free_here})


def token_check(planned: bool) -> Check:
    """A token problem is a fail when a download is planned (--download), a warn otherwise."""
    token = find_token()
    if token.ok:
        return Check(SECTION, "kaggle token", OK, f"Kaggle API token from {token.source}")
    return Check(SECTION, "kaggle token", FAIL if planned else WARN, token.problem, token.fix)

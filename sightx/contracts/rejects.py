"""shards/rejects.csv: every input that did not become a sample, with a reason code and a detail.

The one place the columns and the reason codes are defined: the shard engine writes rows through
`write`, `sightx-explore` reads them through `read` and counts unreadable photos with `UNREADABLE`,
and the list of reasons in docs/guides/sharding.md is checked against `REASONS` by a test. inputs = written + rejected.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

from sightx.files.atomic import atomic_write_text

FILE = "rejects.csv"
COLUMNS = ("source", "image", "reason", "detail")

# Reason code -> what it means. Codes are stable: scripts filter rejects.csv on them.
REASONS: dict[str, str] = {
    "no-label": "the image id is not in the label file",
    "duplicate-id": "another input has the same image id (the first one is kept)",
    "ungradable-label": "the label file marks the image ungradable",
    "not-a-file": "an archive entry or folder entry that is not a regular file (never opened)",
    "corrupt-member": "an archive member whose stored data is damaged (bad CRC, short, too long)",
    "unreadable": "the file could not be read",
    "empty-file": "the file is empty",
    "not-image": "neither JPEG, PNG nor TIFF",
    "not-jpeg": "a .jpeg/.jpg that is not JPEG data",
    "truncated": "the image data ends early",
    "decode-error": "the decoder refused the image data",
    "decoder-crash": "decoding it killed its worker process twice",
    "too-small": "smaller than the output size (from the header: never decoded)",
    "too-large": "over the pixel limit (from the header: never decoded)",
    "too-many-scans": "a progressive JPEG with more scans than encoders write (over 64, each a pass over the image; never decoded)",
    "too-few-bytes": "far fewer bytes than a real photo of the size its header claims (a bomb, or a header without data; never decoded)",
    "no-fov": "no field of view visible (blank, black, white-out or not a fundus photo)",
    "fov-too-small": "the field of view found is implausibly small",
    "low-quality": "below a --min-quality gate on a field measure",
    "ungradable": "below the --gate gradability=T threshold",
    "error": "an unexpected error while making the sample (its detail says which)",
}
# The reasons that mean the photo itself could not be decoded (sightx-explore counts these as unreadable).
UNREADABLE = ("unreadable", "empty-file", "not-jpeg", "truncated", "decode-error", "decoder-crash")


@dataclass(frozen=True)
class Reject:
    """One rejected input: where it came from (member name), its image id, a reason code, a detail."""

    source: str
    image: str
    reason: str
    detail: str

    def to_list(self) -> list[str]:
        """As the manifest's shard records keep it (for resume)."""
        return list(astuple(self))


def write(out: Path, rows: Iterable[Reject]) -> None:
    """out/rejects.csv, sorted by source so the file is the same whatever order work finished in."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(astuple(r) for r in sorted(rows, key=lambda r: r.source))
    atomic_write_text(out / FILE, buf.getvalue())


def read(out: Path, limit: int | None = None) -> Iterator[Reject]:
    """Rows of out/rejects.csv (the first `limit`); OSError or csv.Error when it cannot be read.
    Undecodable bytes are replaced, never fatal: a reader of rejects wants to see them."""
    with open(out / FILE, newline="", encoding="utf-8", errors="replace") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if limit is not None and i >= limit:
                return
            yield Reject(*(row.get(c) or "" for c in COLUMNS))

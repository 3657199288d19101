"""What a DATA path holds, read exactly as sightx-shard reads it: the source `open_source` opens (so
a missing part, a truncated part or an archive without its end record is the same one line), its
train and test image ids, the label file `find_labels` finds, the bytes on disk and what
extracting it would write. sightx-doctor and sightx-fetch's verification report from it.

Nothing it opens imports more than the standard library until a label file is parsed (pandas):
the doctor lists a download in an interpreter where nothing is installed yet, and says which
label file it could not read there rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sightx.errors import SightXError
from sightx.labels.formats import read_label_set
from sightx.labels.ids import image_id
from sightx.sources.base import Member, Source
from sightx.sources.competition import CompetitionSource, subsets
from sightx.sources.detect import open_source
from sightx.sources.folder import FolderSource
from sightx.sources.labels import find_labels
from sightx.sources.zipsource import ZipSource


@dataclass
class Survey:
    """One DATA path. `kind` is empty when it cannot be opened: `problems` then says why."""

    path: Path
    kind: str = ""  # folder | zip | split-zip | competition | tar
    images: list[str] = field(default_factory=list)  # ids of the train images (not those under test/)
    test_images: int = 0
    empty_images: int = 0  # 0-byte train images: sightx-shard rejects them
    labels: set[str] | None = None  # ids the label file grades or marks ungradable; None: not read
    label_source: str = ""  # where the label file is, read or not
    stored_bytes: int = 0  # on disk
    extract_bytes: int = 0  # what extracting its images would write (0 for a folder)
    problems: list[str] = field(default_factory=list)  # what sightx-shard would stop on, one line each
    notes: list[str] = field(default_factory=list)  # what could not be checked in this interpreter


def survey(path: Path) -> Survey:
    """`path` opened as sightx-shard opens it; its failure to open is the survey's one problem."""
    found = Survey(path)
    try:
        source = open_source(path)
        members = source.members()
    except (SightXError, OSError) as e:
        found.problems.append(str(e))
        return found
    found.kind = _kind(source)
    train = [m for m in members if not _under_test(m.name)]
    test = [m for m in members if _under_test(m.name)]
    if isinstance(source, CompetitionSource):
        found.extract_bytes = sum(i.file_size for i in source.outer.infolist())  # the parts, extracted first
        test += _competition_test(path, source, found)
    found.images = [image_id(PurePosixPath(m.name)) for m in train]
    found.test_images = len(test)
    found.empty_images = sum(m.size == 0 for m in train)
    images_bytes = sum(m.size for m in train + test)
    found.stored_bytes = images_bytes if isinstance(source, FolderSource) else _file_bytes(source)
    found.extract_bytes += 0 if isinstance(source, FolderSource) else images_bytes
    _labels(source, found)
    return found


def _kind(source: Source) -> str:
    """The name the doctor gives a source."""
    if isinstance(source, FolderSource):
        return "folder"
    if isinstance(source, ZipSource):
        return "split-zip" if source.parts else "zip"
    if isinstance(source, CompetitionSource):
        return "competition"
    return "tar"


def _under_test(name: str) -> bool:
    """Kaggle's layout keeps the unlabelled images in test/: they are not expected in the label file."""
    parts = PurePosixPath(name).parts
    return len(parts) > 1 and parts[0].lower() == "test"


def _competition_test(path: Path, train: CompetitionSource, found: Survey) -> list[Member]:
    """The competition zip's test images, as `sightx-shard --unlabeled` opens them."""
    if "test" not in subsets(train.outer.namelist()):
        return []
    try:
        return open_source(path, unlabeled=True).members()
    except (SightXError, OSError) as e:
        found.problems.append(str(e))
        return []


def _file_bytes(source: Source) -> int:
    """The archive's size on disk: all its parts for a byte split."""
    files = source.parts if isinstance(source, ZipSource) and source.parts else (source.describe()[0],)
    return sum(Path(f).stat().st_size for f in files)


def _labels(source: Source, found: Survey) -> None:
    """The label file sightx-shard would use, parsed by its parser; where pandas is missing, only found."""
    try:
        located = find_labels(source)
    except SightXError as e:
        found.problems.append(str(e))
        return
    if located is None:
        return
    data, found.label_source = located
    try:
        labels = read_label_set(data, found.label_source)
    except SightXError as e:
        found.problems.append(str(e))
    except ImportError as e:  # pandas, which sightx-shard installs with it
        found.notes.append(f"{found.label_source} not read: {e.name or e} cannot be imported here")
    else:
        found.labels = set(labels.grades) | set(labels.ungradable)

"""sightx-fetch: the Kaggle EyePACS download through the official `kaggle` client, with every check
that can fail made before the network (token, its permissions, write access, disk), the client's
failures turned into one line each, and the finished download verified member by member.

The client resumes a partial file by itself (kaggle >= 2: `competition_download_files` without
force), so a second run after a break continues where the first stopped."""

from __future__ import annotations

import errno
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightx.doctor import system
from sightx.doctor.context import BYTES_AT_512
from sightx.doctor.token import CREATE, find_token
from sightx.errors import SightXError, describe
from sightx.sources.survey import Survey, survey

COMPETITION = "diabetic-retinopathy-detection"
DOWNLOAD_BYTES = 88_310_951_633  # diabetic-retinopathy-detection.zip as Kaggle serves it
TRAIN_IMAGES = 35_126
TEST_IMAGES = 53_576
INSTALL = "pip install 'sightx[kaggle]' (in a checkout: pip install -e '.[kaggle]')"
# What Kaggle's diabetic-retinopathy-detection.zip holds, member by member.
KAGGLE_MEMBERS = (
    "sample.zip",
    "sampleSubmission.csv.zip",
    "trainLabels.csv.zip",
    *(f"train.zip.{i:03d}" for i in range(1, 6)),
    *(f"test.zip.{i:03d}" for i in range(1, 8)),
)


class FetchError(SightXError):
    """A download that cannot start or did not finish; one line saying what to do."""


@dataclass(frozen=True)
class Expected:
    """What a verified download holds; None: not checked (a synthetic download in tests)."""

    size: int | None = DOWNLOAD_BYTES
    train_images: int | None = TRAIN_IMAGES


KAGGLE = Expected()


@dataclass(frozen=True)
class FetchOptions:
    competition: str = COMPETITION
    to: Path = Path("data")
    size: int = 512  # sightx-shard --size, for the shard part of the disk estimate
    shards: Path = Path("shards")


def download_path(opts: FetchOptions) -> Path:
    return opts.to / f"{opts.competition}.zip"


def preflight(opts: FetchOptions) -> int:
    """Token, target folder, disk: everything checkable offline. Returns the bytes still to download."""
    token = find_token()
    if not token.ok:
        raise FetchError(f"{token.problem}: {token.fix}")
    try:
        opts.to.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=opts.to, prefix=".sightx-write-test"):
            pass
    except OSError as e:
        raise FetchError(f"cannot write to {opts.to}: {e.strerror or e}") from None
    target = download_path(opts)
    have = target.stat().st_size if target.is_file() else 0
    left = max(0, DOWNLOAD_BYTES - have) if opts.competition == COMPETITION else 0
    shards = int((TRAIN_IMAGES + TEST_IMAGES) * BYTES_AT_512 * (opts.size / 512) ** 2) if opts.competition == COMPETITION else 0
    free_to = system.free_bytes(opts.to)
    same_disk = system.existing_parent(opts.to).stat().st_dev == system.existing_parent(opts.shards).stat().st_dev
    need = left + (shards if same_disk else 0)
    if need > free_to:
        what = f"the download needs {system.human(left)}" + (
            f" and the shards about {system.human(shards)}" if same_disk and shards else ""
        )
        short = system.human(need - free_to)
        raise FetchError(f"not enough disk at {opts.to}: {what}, {system.human(free_to)} free; free {short} or use --to on a larger disk")
    free_shards = system.free_bytes(opts.shards)
    if not same_disk and shards > free_shards:
        raise FetchError(f"not enough disk for the shards at {opts.shards}: about {system.human(shards)}, {system.human(free_shards)} free")
    return left


def client() -> Any:
    """The official client, authenticated; its own import-time and exit(1) paths become one line."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as e:
        raise FetchError(f"the kaggle package is not installed ({e.name or e}): {INSTALL}") from None
    api = KaggleApi()
    try:
        api.authenticate()
    except (Exception, SystemExit) as e:  # the client prints help and calls exit(1) without credentials
        raise FetchError(f"the kaggle client found no usable token ({describe(e)}): {CREATE}") from None
    return api


def download(api: Any, opts: FetchOptions) -> Path:
    """Run the client's download (it resumes a partial file); its failures as FetchError."""
    try:
        api.competition_download_files(opts.competition, path=str(opts.to), force=False, quiet=False)
    except Exception as e:
        raise explain(e, opts) from None
    return download_path(opts)


def explain(e: BaseException, opts: FetchOptions) -> FetchError:
    """One line for what the client raised: HTTP 401/403/404, a full disk, no network."""
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None) or getattr(e, "status", None)
    rules = f"https://www.kaggle.com/competitions/{opts.competition}/rules"
    if status == 401:
        return FetchError(f"Kaggle refused the token (HTTP 401): {CREATE} and replace kaggle.json")
    if status == 403:
        return FetchError(f"Kaggle says forbidden (HTTP 403): accept the competition rules at {rules}, then run sightx-fetch again")
    if status == 404:
        return FetchError(f"no competition {opts.competition!r} on Kaggle (HTTP 404)")
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return FetchError(f"the disk at {opts.to} filled up during the download: free space and run sightx-fetch again (it resumes)")
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"ConnectionError", "Timeout", "MaxRetryError", "NewConnectionError", "NameResolutionError"}:
        m = re.search(r"\[Errno [-\d]+\] ([^'\")]+)", str(e))
        reason = m.group(1).strip() if m else type(e).__name__
        return FetchError(f"no network: cannot reach Kaggle ({reason}); run sightx-fetch again when online (it resumes)")
    return FetchError(f"download failed: {describe(e)}")


def verify(path: Path, expected: Expected = KAGGLE) -> tuple[Survey, list[str]]:
    """The download checked as sightx-shard will read it (parts, their sizes, the inner central
    directories, the labels), every member Kaggle's holds present, and (for the real download)
    its size and the 35,126 train images and labels."""
    found = survey(path)
    problems = list(found.problems)
    if found.kind and found.kind != "competition":
        problems.append(f"{path} is not the competition zip (found: {found.kind})")
    if found.kind == "competition":
        problems += _absent(path)
    if expected.size is not None and found.stored_bytes and found.stored_bytes != expected.size:
        problems.append(f"{path.name} is {found.stored_bytes:,} bytes, Kaggle's is {expected.size:,}")
    if expected.train_images is not None and found.kind:
        if len(found.images) != expected.train_images:
            problems.append(f"train.zip holds {len(found.images):,} images, Kaggle's {expected.train_images:,}")
        if found.labels is not None and len(found.labels) != expected.train_images:
            problems.append(f"trainLabels.csv has {len(found.labels):,} rows, Kaggle's {expected.train_images:,}")
    return found, problems


def _absent(path: Path) -> list[str]:
    """Kaggle's members missing from the download. A part missing inside its split is named by the
    source already; this names the ones after the last present (train.zip.005 gone leaves 001-004
    a split whose end record is missing) and the samples sharding never reads."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())

    def named_by_source(name: str) -> bool:
        stem, _, number = name.rpartition(".")
        return number.isdigit() and any(n.startswith(stem + ".") and n > name for n in names)

    return [f"{path.name} lacks {name}" for name in KAGGLE_MEMBERS if name not in names and not named_by_source(name)]


def fetch(opts: FetchOptions, expected: Expected = KAGGLE) -> Path:
    """Preflight, download, verify; the verified zip's path."""
    path = download_path(opts)
    left = preflight(opts)
    if left or not path.is_file():
        download(client(), opts)
    _, problems = verify(path, expected)
    if problems:
        more = f" (and {len(problems) - 1} more: sightx-doctor {path})" if len(problems) > 1 else ""
        raise FetchError(f"downloaded, but {problems[0]}{more}")
    return path

"""Where a shard set is read from: a local folder, an http(s) base, an fsspec URL or a `pipe:` command.

The location comes only from the user's own command line. What a manifest names stays data: each
shard is a `{split}-NNNNNN.tar` name (checked by contracts.manifest) joined to that base, so a
manifest can never become a URL, a path elsewhere or a command of its own.

Before training the manifest is fetched (at most MAX_MANIFEST_BYTES) and validated, then every
finished shard is checked without reading it, where the location can say so cheaply: a stat
(folder), a HEAD request (http), fsspec's `size` (fsspec). A `pipe:` command cannot be asked for
a size without running it, so there that check is skipped: a missing or short shard then shows
as counted corrupt samples in its epoch (stopping the run past --max-bad-samples), as content
damage does everywhere. A shard that fails mid-read (a dropped connection) is counted the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from sightx.contracts import manifest as mf
from sightx.contracts.verify import Problem, check_files
from sightx.errors import SightXError, one_line

NAME = "{name}"  # where a pipe: command template takes the file name (shard or manifest.json)
MAX_MANIFEST_BYTES = 64 << 20  # EyePACS' manifest is well under 1 MB; a reply past this is not one
TIMEOUT_S = 15  # per connect and per read: an unreachable server is an error after this, not a hang
CHECK_THREADS = 8  # HEAD requests in flight while checking a set's shards
CHUNK = 1 << 20
SCHEME = re.compile(r"[A-Za-z][\w+.:-]*")  # fsspec chains count too: simplecache::s3://...


class LocationError(SightXError):
    """A shard location that cannot be used (bad form, unreachable, missing package): one line."""


@dataclass(frozen=True)
class ShardLocation:
    """A parsed location: plain data, so it pickles to spawned DataLoader workers."""

    kind: str  # folder, http, fsspec or pipe
    base: str  # the folder, the URL without a trailing slash, or the pipe: command template
    manifest: str | None = None  # --manifest: read the manifest from this file or URL instead of the base

    def __str__(self) -> str:
        return self.base

    @property
    def local(self) -> bool:
        return self.kind == "folder"

    def address(self, record: dict[str, Any]) -> str:
        """What `open` reads for a shard record: the base joined to its checked plain name."""
        return self._join(mf.shard_name(record))

    def _join(self, name: str) -> str:
        if self.kind == "folder":
            return str(Path(self.base).absolute() / name)
        if self.kind == "pipe":
            return self.base.replace(NAME, name)
        return f"{self.base}/{name}"

    @contextlib.contextmanager
    def open(self, address: str, expected: int | None = None) -> Iterator[BinaryIO]:
        """A binary stream of one shard (an `address` from this location), read front to back.

        Every failure to open or read it is an OSError (an http.client one included), which readers
        already take for an unreadable shard; so is a remote shard that ends short of `expected` bytes
        (its manifest size) or, without one, of what the server announced.
        """
        try:
            if self.kind == "folder":  # its size was checked before training
                with open(address, "rb") as f:
                    yield f
            elif self.kind == "http":
                with urllib.request.urlopen(address, timeout=TIMEOUT_S) as response:
                    length = response.headers.get("Content-Length")
                    body = _Counted(response)
                    yield cast(BinaryIO, body)
                    body.finish(expected or (int(length) if length and length.isdigit() else None), address)
            elif self.kind == "fsspec":
                with _fsspec().open(address, "rb") as f:
                    body = _Counted(f)
                    yield cast(BinaryIO, body)
                    body.finish(expected or getattr(f, "size", None), address)
            else:
                with _piped(address) as out:
                    body = _Counted(out)
                    yield cast(BinaryIO, body)
                    body.finish(expected, address)
        except http.client.HTTPException as e:  # a dropped connection mid-body: IncompleteRead and kin
            raise OSError(f"{address}: {_reason(e)}") from e

    def read_manifest(self) -> dict[str, Any]:
        """The validated manifest, fetched from --manifest or beside the shards."""
        where = self.manifest or ("" if self.kind == "folder" else self._join(mf.MANIFEST))
        if not where:
            return mf.read(Path(self.base))
        if not where.startswith("pipe:") and "://" not in where:
            return mf.read(Path(where))
        return mf.parse(_fetch(where), where)

    def check(self, records: list[dict[str, Any]]) -> list[Problem]:
        """Each shard present at the manifest's size, asked without reading it; nothing for pipe:."""
        if self.kind == "folder":
            return check_files(Path(self.base), records)
        if self.kind == "pipe":
            return []
        ask = _head if self.kind == "http" else _fsspec_size
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            found = list(pool.map(lambda rec: ask(self.address(rec)), records))
        problems = []
        for rec, (size, error) in zip(records, found):
            if error:
                problems.append(Problem(rec["name"], error))
            elif size is not None and size != rec["bytes"]:
                problems.append(Problem(rec["name"], f"{size} bytes, the manifest says {rec['bytes']}"))
        return problems


class _Counted:
    """A body that counts what is read through it. A tar reader stops at the archive's end marker, and
    one cut at a 512-byte block boundary looks like that marker: only the byte count tells them apart."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.read_bytes = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.read_bytes += len(data)
        return data

    def finish(self, expected: int | None, address: str) -> None:
        """Read what the tar reader left (its end padding); OSError when less arrived than was announced."""
        while self.read(CHUNK):
            pass
        if expected is not None and self.read_bytes != expected:
            raise OSError(f"{address}: {self.read_bytes} of {expected} bytes arrived (the connection dropped?)")


def parse(text: str, manifest: str | None = None) -> ShardLocation:
    """Read a location as the user wrote it: `pipe:CMD {name}`, `http(s)://...`, `SCHEME://...` (fsspec), else a folder.

    A URL may also name the manifest itself (`.../manifest.json`): its folder is the base.
    """
    if text.startswith("pipe:"):
        if NAME not in text:
            raise LocationError(
                f"a pipe: location needs {NAME} where the file name goes, e.g. 'pipe:aws s3 cp s3://bucket/shards/{NAME} -'"
            )
        return ShardLocation("pipe", text, manifest)
    scheme, sep, _ = text.partition("://")
    if not sep or not SCHEME.fullmatch(scheme):
        return ShardLocation("folder", text, manifest)
    base = text.rstrip("/").removesuffix(f"/{mf.MANIFEST}")
    if scheme.lower() in ("http", "https"):
        return ShardLocation("http", base, manifest)
    _fsspec()
    return ShardLocation("fsspec", base, manifest)


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise LocationError(
            "URLs other than http(s):// are read through fsspec: "
            "pip install 'sightx[remote]' (or: pip install fsspec), and its backend, e.g. s3fs"
        ) from None
    return fsspec


def _fetch(where: str) -> bytes:
    """At most MAX_MANIFEST_BYTES from a URL or a pipe: command; LocationError (one line) when it cannot."""
    try:
        if where.startswith("pipe:"):
            return _run_bounded(where)
        if where.partition("://")[0].lower() in ("http", "https"):
            with urllib.request.urlopen(where, timeout=TIMEOUT_S) as response:
                return _bounded(response, where)
        with _fsspec().open(where, "rb") as f:
            return _bounded(f, where)
    except urllib.error.HTTPError as e:
        hint = ": is this the URL of a folder written by sightx-shard?" if e.code == 404 else ""
        raise LocationError(f"{where}: HTTP {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        raise LocationError(f"cannot reach {where}: {_reason(e.reason)}") from None
    except TimeoutError:
        raise LocationError(f"no answer from {where} within {TIMEOUT_S}s") from None
    except FileNotFoundError:
        raise LocationError(f"{where} not found: is this a folder written by sightx-shard?") from None
    except (OSError, http.client.HTTPException, ValueError, ImportError, RuntimeError) as e:
        raise LocationError(f"cannot read {where}: {_reason(e)}") from None


def _reason(e: object) -> str:
    return one_line(f"{type(e).__name__}: {e}" if isinstance(e, BaseException) else str(e))


def _bounded(stream: IO[bytes], where: str) -> bytes:
    data = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise LocationError(f"{where}: more than {MAX_MANIFEST_BYTES} bytes, not a SightX manifest")
    return data


def _run_bounded(command: str) -> bytes:
    """A pipe: command's output (bounded); its failure is one line ending with the last line it printed."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty command cannot block on a full stderr
        proc = subprocess.Popen(command.removeprefix("pipe:"), shell=True, stdout=subprocess.PIPE, stderr=err)
        with proc:  # closes stdout and waits for the command
            try:
                data = proc.stdout.read(MAX_MANIFEST_BYTES + 1)  # type: ignore[union-attr]
            except BaseException:
                proc.kill()
                raise
            if len(data) > MAX_MANIFEST_BYTES:
                proc.kill()
                raise LocationError(f"{command}: more than {MAX_MANIFEST_BYTES} bytes, not a SightX manifest")
        err.seek(0)
        said = [line for line in err.read().decode(errors="replace").splitlines() if line.strip()]
    if proc.returncode:
        raise LocationError(f"{command!r} exited with status {proc.returncode}{': ' + said[-1].strip() if said else ''}")
    return data


@contextlib.contextmanager
def _piped(address: str) -> Iterator[BinaryIO]:
    """A shard from a pipe: command's stdout. Read to the end, a non-zero exit status is an OSError
    (counted as an unreadable shard); left early, the command is killed, never left running."""
    proc = subprocess.Popen(address.removeprefix("pipe:"), shell=True, stdout=subprocess.PIPE, bufsize=CHUNK)
    out: BinaryIO = proc.stdout  # type: ignore[assignment]
    finished = False
    try:
        yield out
        while out.read(CHUNK):  # the tar's end padding: a command killed by SIGPIPE would look failed
            pass
        finished = True
    finally:
        if not finished:
            proc.kill()
        out.close()
        status = proc.wait()
    if status:
        raise OSError(f"{address!r} exited with status {status}")


def _head(url: str) -> tuple[int | None, str]:
    """(Content-Length or None, problem or "") from a HEAD request."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            return (int(length) if length and length.isdigit() else None), ""
    except urllib.error.HTTPError as e:
        return None, f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return None, f"unreachable ({_reason(e.reason)})"
    except (OSError, http.client.HTTPException) as e:
        return None, _reason(e)


def _fsspec_size(url: str) -> tuple[int | None, str]:
    fs, path = _fsspec().core.url_to_fs(url)
    try:
        return int(fs.size(path)), ""
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, RuntimeError) as e:
        return None, _reason(e)

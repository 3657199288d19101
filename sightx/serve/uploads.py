"""Request bodies -> photos in memory: bounded in size, count and time, never written to disk.

Starlette's form parser spools files over 1 MB to a temporary file; uploads here are patient
photos, so the multipart body is parsed as it streams in, into memory, and reading stops (413)
as soon as the body passes the limit, or before reading at all when Content-Length says so.
Each chunk must come within `idle_s` of the one before and the whole body within `total_s` of
the headers, else 408 and the connection is closed: a client that stalls holds nothing for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from sightx.serve.errors import Refused

RAW_TYPES = ("image/jpeg", "image/png", "image/tiff", "application/octet-stream")


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


@dataclass(frozen=True)
class Reading:
    """How much a body may be and how long it may take."""

    max_bytes: int
    max_files: int
    idle_s: float
    total_s: float
    hold: Callable[[int], None] = lambda n: None  # counts bytes against the service's budget; raises to refuse


async def read_uploads(request: Request, reading: Reading) -> list[Upload]:
    """The photos of a POST: the repeatable multipart field `files`, or one raw image body."""
    max_bytes = reading.max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    media = ctype.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise Refused(422, "multipart body without a boundary")
        uploads = await _multipart(request, boundary, reading)
    elif media in RAW_TYPES:
        data = bytearray()
        async for chunk in _chunks(request, reading):
            data += chunk
        uploads = [Upload(request.query_params.get("name") or "upload", bytes(data))]
    else:
        raise Refused(
            415, f"send multipart/form-data with 'files' fields, or a raw {', '.join(RAW_TYPES[:3])} body, not {media or 'no type'}"
        )
    if not uploads:
        raise Refused(422, "no photo in the request: send one or more multipart fields named 'files'")
    return uploads


def _too_large(max_bytes: int) -> Refused:
    return Refused(413, f"request body over the {max_bytes / 1024 / 1024:g} MB limit")


async def _chunks(request: Request, reading: Reading) -> AsyncIterator[bytes]:
    """The body as it arrives, under the deadlines."""
    loop = asyncio.get_running_loop()
    end = loop.time() + reading.total_s
    received = 0
    while True:
        left = end - loop.time()
        wait = min(reading.idle_s, left)
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(request.receive(), wait)
        except asyncio.TimeoutError:
            late = left <= reading.idle_s
            said = f"not all in within {reading.total_s:g} s" if late else f"no data for {reading.idle_s:g} s"
            raise Refused(408, f"request body {said} ({received} bytes received); the connection is closed") from None
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client went away mid-upload")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > reading.max_bytes:
            raise _too_large(reading.max_bytes)
        reading.hold(len(chunk))
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


class _Parts:
    """python-multipart callbacks collecting the parts' names, file names and bytes in memory."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.uploads: list[Upload] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda b, s, e: self._header_field.extend(b[s:e]),
            "on_header_value": lambda b, s, e: self._header_value.extend(b[s:e]),
            "on_header_end": self._header_end,
            "on_part_data": lambda b, s, e: self._data.extend(b[s:e]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers.clear()
        self._data = bytearray()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _end(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.get(b"name") != b"files":
            return  # other form fields are ignored
        if len(self.uploads) == self.max_files:
            raise Refused(413, f"more than {self.max_files} photos in one request")
        name = disposition.get(b"filename", b"").decode("utf-8", "replace") or f"file{len(self.uploads) + 1}"
        self.uploads.append(Upload(name, bytes(self._data)))
        self._data = bytearray()


async def _multipart(request: Request, boundary: bytes, reading: Reading) -> list[Upload]:
    parts = _Parts(reading.max_files)
    parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in _chunks(request, reading):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        raise Refused(422, f"malformed multipart body: {e}") from None
    return parts.uploads

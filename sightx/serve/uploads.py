"""Request bodies -> photos in memory: bounded in size and count, never written to disk.

Starlette's form parser spools files over 1 MB to a temporary file; uploads here are patient
photos, so the multipart body is parsed as it streams in, into memory, and reading stops (413)
as soon as the body passes the limit, or before reading at all when Content-Length says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from sightx.serve.errors import Refused

RAW_TYPES = ("image/jpeg", "image/png", "image/tiff", "application/octet-stream")


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


async def read_uploads(request: Request, max_bytes: int, max_files: int) -> list[Upload]:
    """The photos of a POST: the repeatable multipart field `files`, or one raw image body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    media = ctype.decode("latin-1").lower()
    if media == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise Refused(422, "multipart body without a boundary")
        uploads = await _multipart(request, boundary, max_bytes, max_files)
    elif media in RAW_TYPES:
        data = bytearray()
        async for chunk in _chunks(request, max_bytes):
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


async def _chunks(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            yield chunk
    except ClientDisconnect:
        raise Refused(400, "the client went away mid-upload") from None


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


async def _multipart(request: Request, boundary: bytes, max_bytes: int, max_files: int) -> list[Upload]:
    parts = _Parts(max_files)
    parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in _chunks(request, max_bytes):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        raise Refused(422, f"malformed multipart body: {e}") from None
    return parts.uploads

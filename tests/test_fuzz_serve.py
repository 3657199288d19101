"""Fuzzing the server: hypothesis builds requests to the real service under uvicorn on loopback:
methods, paths, Host and Authorization headers, content types, multipart bodies with mutated
photos, and raw HTTP with lying Content-Lengths. Whatever comes, the answer is one of the
statuses the API documents (never a 500), carries the security headers, says why in one line
without object reprs or library paths, and the server is idle and healthy afterwards.

The normal suite runs a few seeded examples (seconds); `make fuzz` runs SIGHTX_FUZZ_SERVE_EXAMPLES, unseeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_live import SERVICES, live_server
from test_fuzz import mutated

from sightx.serve import ServeConfig

LONG = "SIGHTX_FUZZ_SERVE_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("SIGHTX_FUZZ_SERVE_EXAMPLES", "40")),
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
STATUSES = {200, 400, 401, 404, 405, 408, 413, 415, 422, 429, 503}
TOKEN = "s3cret"
CONFIG = ServeConfig(token=TOKEN, max_upload_mb=1, max_files=4, read_idle_s=0.3, read_total_s=2, max_request_mp=1)
PATHS = ["/v1/grade", "/v1/grade?cam=1", "/v1/grade?name=%00%ff", "/v1/model", "/", "/docs", "/healthz", "/readyz", "/openapi.json", "/x"]
HOSTS = ["127.0.0.1", "localhost", "[::1]:1", "evil.example", "", "127.0.0.1:99999", "\u00e9.example"]
AUTH = [None, f"Bearer {TOKEN}", f"bearer {TOKEN}", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer  {TOKEN}"]
TYPES = ["image/jpeg", "image/png", "image/tiff", "application/octet-stream", "text/plain", "", "multipart/form-data", "image/jpeg; x=1"]


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[str]:
    with live_server(tiny_checkpoint, CONFIG) as url:
        yield url


@pytest.fixture(scope="module")
def photo(tiny_raw: Path) -> bytes:
    return sorted((tiny_raw / "train").glob("*.jpeg"))[0].read_bytes()


def _check(status: int, headers: httpx.Headers, body: bytes) -> None:
    assert status in STATUSES, (status, body[:300])
    assert "default-src 'self'" in headers.get("content-security-policy", ""), status
    if headers.get("content-type", "").startswith("application/json") and status != 200 and body:  # HEAD: no body
        detail = json.loads(body)["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "object at" not in detail and "site-packages" not in detail, detail


@st.composite
def multipart(draw: st.DrawFn, photo: bytes) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "x", "a" * 70]))
    parts = []
    for i in range(draw(st.integers(0, 5))):
        data = draw(st.sampled_from([photo, b"", b"GIF89a"]) | mutated(photo))
        name = draw(st.sampled_from(["files", "other", "files\x00"]))
        filename = draw(st.sampled_from([f"{i}.jpeg", "", "../../etc/passwd", "\u00e9\r\n.jpeg"]))
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'.encode("utf-8", "replace")
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut]
    said = draw(st.sampled_from([boundary, "", "other"]))
    return body, f"multipart/form-data; boundary={said}" if said else "multipart/form-data"


def test_requests_built_by_hypothesis_get_documented_answers(server: str, photo: bytes) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:

        @FUZZ
        @given(
            st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS"]),
            st.sampled_from(PATHS),
            st.sampled_from(HOSTS),
            st.sampled_from(AUTH),
            st.one_of(multipart(photo), st.tuples(mutated(photo), st.sampled_from(TYPES))),
        )
        def check(method: str, path: str, host: str, auth: str | None, body: tuple[bytes, str]) -> None:
            headers = {"host": host.encode(), "content-type": body[1].encode()}  # bytes: any header goes out as it is
            if auth is not None:
                headers["authorization"] = auth.encode()
            res = client.request(method, path, content=body[0], headers=headers)
            _check(res.status_code, res.headers, res.content)

        check()
    _healthy_and_idle(server)


def test_raw_http_with_lying_lengths_gets_an_answer_or_a_close(server: str, photo: bytes) -> None:
    host, port = server.removeprefix("http://").split(":")

    @FUZZ
    @given(mutated(photo), st.integers(-5, 5000), st.sampled_from([b"", b"\r\n", b"Transfer-Encoding: chunked\r\n"]))
    def check(data: bytes, delta: int, extra: bytes) -> None:
        length = max(0, len(data) + delta)
        head = (
            b"POST /v1/grade HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\nContent-Type: image/jpeg\r\n"
            + extra
            + f"Content-Length: {length}\r\n\r\n".encode()
        )
        with socket.create_connection((host, int(port)), timeout=10) as s:
            with contextlib.suppress(OSError):
                s.sendall(head + data)
            got = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    got += chunk
        if got:  # uvicorn closes some framing errors without a word; anything said is a documented answer
            status = int(got.split(b" ", 2)[1])
            head_end = got.index(b"\r\n\r\n")
            lines = got[:head_end].decode("latin-1").split("\r\n")[1:]
            headers = httpx.Headers([tuple(line.split(": ", 1)) for line in lines])  # type: ignore[misc]
            if status != 400 or b"content-security-policy" in got[:head_end].lower():  # uvicorn's own 400 for bad framing
                _check(status, headers, got[head_end + 4 :] if b"chunked" not in got[:head_end].lower() else b'{"detail": ""}')

    check()
    _healthy_and_idle(server)


def _healthy_and_idle(server: str) -> None:
    assert httpx.get(f"{server}/healthz", headers={"host": "127.0.0.1"}, timeout=30).status_code == 200
    gates = SERVICES[server].gates
    assert gates.in_progress == 0 and gates.body_bytes == 0 and gates.grading == 0

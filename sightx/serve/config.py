"""What an operator sets for the service, besides the checkpoint, host and port: every option and its
default, declared once (the CLI's options read their defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 8  # photos per model call, at most
    tune_batch: bool = True  # at start, lower max_batch to the size fastest per photo (serve/batch_size.py)
    batch_wait_ms: float = 10.0  # how long the first photo of a batch waits for others
    max_queue: int = 16  # requests whose body is in, being preprocessed or graded; one more gets 503
    max_upload_mb: float = 40.0  # per request body
    max_bodies_mb: float = 640.0  # request bodies held at once, being received or graded; past it 503
    max_files: int = 16  # per request
    workers: int = 2  # preprocessing threads (decode, field of view, normalisation)
    token: str | None = None  # bearer token required on /v1/* when set
    read_idle_s: float = 10.0  # a connection that sends nothing for this long (headers or body) is closed
    read_total_s: float = 60.0  # a request body must be in within this long of its headers
    max_per_client: int = 8  # requests in progress from one client address; one more gets 429
    max_photo_mp: float = 25.0  # megapixels per photo (header), for serving: fundus cameras stay under ~25 MP
    max_request_mp: float = 200.0  # megapixels of all the photos of one request (headers)
    allowed_hosts: tuple[str, ...] = LOOPBACK  # Host header names served ('*': any); others get 400

    def __post_init__(self) -> None:
        counts = (self.max_batch, self.max_queue, self.max_files, self.workers, self.max_per_client)
        sizes = (self.max_upload_mb, self.max_bodies_mb, self.read_idle_s, self.read_total_s, self.max_photo_mp, self.max_request_mp)
        if min(counts) < 1 or self.batch_wait_ms < 0 or min(sizes) <= 0 or not self.allowed_hosts:
            raise ValueError(f"invalid service settings {self}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_bodies_bytes(self) -> int:
        return int(self.max_bodies_mb * 1024 * 1024)


def default(name: str) -> Any:
    """The default of a ServeConfig field, for the CLI's option declarations."""
    return next(f.default for f in fields(ServeConfig) if f.name == name)

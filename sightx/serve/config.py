"""What an operator sets for the service, besides the checkpoint, host and port."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 8  # photos per model call, at most
    tune_batch: bool = True  # at start, lower max_batch to the size fastest per photo (serve/batch_size.py)
    batch_wait_ms: float = 10.0  # how long the first photo of a batch waits for others
    max_queue: int = 16  # requests being read, preprocessed or graded; one more gets 503
    max_upload_mb: float = 40.0  # per request body
    max_files: int = 16  # per request
    workers: int = 2  # preprocessing threads (decode, field of view, normalisation)
    token: str | None = None  # bearer token required on /v1/* when set

    def __post_init__(self) -> None:
        if min(self.max_batch, self.max_queue, self.max_files, self.workers) < 1 or self.batch_wait_ms < 0 or self.max_upload_mb <= 0:
            raise ValueError(f"invalid service settings {self}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

"""Tests only: make a pool worker die by a real SIGKILL (the OOM killer's signal), or hang, on a
chosen input, so the tests of worker deaths run the real thing rather than a mock.

SIGHTX_TEST_FAULT="kill NAME", "kill-once NAME MARKER-FILE" (only while MARKER-FILE does not exist)
or "hang NAME" (until the run is killed). Armed by pool worker initializers only (`arm`), never in
the parent: an in-process run is not touched. Fired where an input's name meets the decoder
(`at`): sightx.image.photos.preprocess_input, sightx.inference.predict.
"""

from __future__ import annotations

import os
import signal
import time

TEST_FAULT_ENV = "SIGHTX_TEST_FAULT"
_armed: tuple[str, ...] | None = None


def arm() -> None:
    """In a worker's initializer: read the fault, if any, from the environment."""
    global _armed
    spec = os.environ.get(TEST_FAULT_ENV, "").split()
    _armed = tuple(spec) if len(spec) >= 2 else None


def at(name: str) -> None:
    """Die or hang here if `name` is the armed input."""
    if _armed is not None and _armed[1] == name:
        _fail(*_armed)


def _fail(action: str, name: str, *marker: str) -> None:
    if action == "kill-once":
        try:
            os.close(os.open(marker[0], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return  # killed once already
    if action in ("kill", "kill-once"):
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "hang":
        parent = os.getppid()
        while os.getppid() == parent:  # until the run is gone (killed): a test leaves no process behind
            time.sleep(0.05)
        os._exit(1)

"""Tests only: make a worker die by a real SIGKILL (the OOM killer's signal), or hang, on a chosen
input, so the tests of worker deaths run the real thing rather than a mock.

SIGHTX_TEST_FAULT="kill NAME", "kill-once NAME MARKER-FILE" (only while MARKER-FILE does not exist)
or "hang NAME" (until the run is killed). The one hook, `maybe_fail`, is called from one place:
`sightx.parallel.workers.run_job`, where a worker (a spawned one, or a Dask task) starts a job,
with the names of the inputs the job reads. The parent never runs a job through it, so an
in-process run is never touched, and no production module knows about faults.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Collection

TEST_FAULT_ENV = "SIGHTX_TEST_FAULT"


def maybe_fail(inputs: Collection[str]) -> None:
    """Die or hang here if the input the fault names is one of `inputs` (read from the
    environment each time: a spawned worker has the parent's, nothing inherited is relied on)."""
    spec = os.environ.get(TEST_FAULT_ENV, "").split()
    if len(spec) >= 2 and spec[1] in inputs:
        _fail(*spec)


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

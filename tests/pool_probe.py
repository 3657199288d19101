"""A worker function for pool tests that imports nothing heavy (spawned workers import this module)."""

from __future__ import annotations

import os
from pathlib import Path


def siblings(_item: object) -> int:
    """How many processes share this worker's parent: the pool's size (plus any helper it started)."""
    parent = os.getppid()
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        count += int(fields[1]) == parent
    return count

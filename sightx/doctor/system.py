"""Cores, memory and free disk from the standard library: the facts worker counts and disk checks need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def cores() -> int:
    """The cores this process may use (affinity where the OS has it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def memory() -> tuple[int | None, int | None]:
    """(total, available) bytes of RAM, None where the OS does not say."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        values = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
        return values.get("MemTotal"), values.get("MemAvailable")
    if sys.platform == "darwin":
        try:
            total = int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5).stdout.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            return None, None
        return total, None
    return None, None


def existing_parent(path: Path) -> Path:
    """The nearest folder of `path` that exists: where its bytes would land."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or "/")


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that `path` (or its nearest existing parent) is on."""
    return shutil.disk_usage(existing_parent(path)).free


def human(n: float) -> str:
    """Bytes as people read them: 88.3 GB, 93 KB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"

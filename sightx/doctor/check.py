"""One checklist line (ok / warn / fail, what was found, the command that fixes it) and the guard
that turns a check's unexpected exception into a fail line: the doctor must never print a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    section: str
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""  # the exact command (or the one step) that fixes a warn or fail
    data: dict[str, Any] = field(default_factory=dict)  # numbers for --json

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def guarded(section: str, run: Callable[[], Iterable[Check]]) -> list[Check]:
    """The checks `run` yields; one that crashes becomes a fail line naming the exception."""
    out: list[Check] = []
    try:
        out.extend(run())
    except Exception as e:  # any failure inside a check is a finding, not a crash of the doctor
        text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
        out.append(Check(section, "check", FAIL, f"the check stopped: {text}", "run `sightx-doctor` again; if it repeats, report it"))
    return out

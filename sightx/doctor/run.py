"""The doctor's run: every section in order, each check guarded, so a broken environment still
gets its whole checklist. Sections import heavy packages only inside their checks."""

from __future__ import annotations

from sightx.doctor import compute, data, decoding, env, packages
from sightx.doctor.check import FAIL, Check, guarded
from sightx.doctor.context import Context


def diagnose(ctx: Context) -> list[Check]:
    """All checks for this interpreter and ctx.data, in checklist order."""
    results: list[Check] = []
    results += guarded(env.SECTION, env.checks)
    results += guarded(packages.SECTION, packages.checks)
    results += guarded(compute.SECTION, lambda: compute.checks(ctx.quick))
    results += guarded(decoding.SECTION, lambda: decoding.checks(ctx))
    results += guarded(data.SECTION, lambda: data.checks(ctx))
    return results


def failed(results: list[Check]) -> bool:
    return any(c.status == FAIL for c in results)

"""sightx-doctor: environment, packages, compute, decoding and data checks, each ok / warn / fail
with the command that fixes it; and sightx-fetch (fetch.py), the download checked by the same checks.
Runs on the standard library alone (`python -m sightx.doctor`), so
it can say what is missing; every heavy import happens inside a check."""

from sightx.doctor.check import Check
from sightx.doctor.context import Context
from sightx.doctor.run import diagnose, failed

__all__ = ["Check", "Context", "diagnose", "failed"]

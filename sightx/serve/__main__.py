"""`python -m sightx.serve` = `sightx-serve`."""

from sightx.cli import serve

serve()

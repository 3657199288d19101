"""`python -m sightx.shard` is `sightx-shard`."""

from sightx.cli import shard

shard()

"""The shard engine: raw fundus JPEGs -> preprocessed, class-balanced WebDataset shards."""

from sightx.shard.engine import ShardError, ShardInterrupted, ShardOptions, format_summary, run

__all__ = ["ShardError", "ShardInterrupted", "ShardOptions", "format_summary", "run"]

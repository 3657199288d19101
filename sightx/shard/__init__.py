"""The shard engine: raw fundus JPEGs -> preprocessed, class-balanced WebDataset shards."""

from sightx.shard.engine import ShardError, ShardInterrupted, ShardOptions, format_summary, nothing_written, run

__all__ = ["ShardError", "ShardInterrupted", "ShardOptions", "format_summary", "nothing_written", "run"]

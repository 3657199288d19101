"""SightX: retinal-photo archive -> WebDataset shards -> DR grading model."""

__version__ = "0.1.0"

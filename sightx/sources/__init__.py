"""Where images come from: a folder, a zip, byte-split zip parts, Kaggle's competition zip, a tar.

Every source lists its image members (safe name, size) and gives their bytes: by random access
where the archive allows, in one streaming pass where it does not. Nothing is ever extracted.
"""

from sightx.sources.base import Member, Source, SourceError
from sightx.sources.detect import is_archive, open_source
from sightx.sources.labels import find_labels

__all__ = ["Member", "Source", "SourceError", "find_labels", "is_archive", "open_source"]

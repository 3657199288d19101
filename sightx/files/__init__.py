"""Files on disk: atomic writes, read-only concatenated files, names that are not UTF-8."""

"""File names as SightX records them: always valid text, every byte kept.

A folder or tar can name a file with bytes that are not UTF-8; Python hands such a name over with
each of those bytes as a lone surrogate (PEP 383's surrogateescape), which no UTF-8 CSV, JSON or
HTML can hold. Every name SightX lists is recorded instead as Python prints those bytes, `\\xHH`
(`bad\\xff_left.jpeg`): readable in every report, the same in each, and turned back into the name
on disk by `original` (whose `os.fsencode` is the file's exact bytes). Valid names are untouched.
"""

from __future__ import annotations

import re

# Only bytes 80-ff can be undecodable: an ASCII byte always decodes.
_ESCAPE = re.compile(r"\\x([89a-f][0-9a-f])")


def recorded(name: str) -> str:
    """`name` with each undecodable byte as `\\xHH`; a valid name is returned as it is."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system made (read from a hostile JSON, say)
        return name.encode("utf-8", "backslashreplace").decode("ascii")
    return raw.decode("utf-8", "backslashreplace")


def original(name: str) -> str:
    """The name on disk for a recorded one: each `\\xHH` back to its byte (as surrogateescape holds it).

    A name that literally contains `\\x` and two hex digits 80-ff reads the same as one with that
    byte, so a reader tries the name as written first (FolderSource.read)."""
    return _ESCAPE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), name)

"""What a shard set's class labels mean: DR grades (0-4) or image-quality classes (EyeQ's 0-2).

One set holds one kind, named in its manifest (`labels`), so a trainer, a verifier or a grader
knows what `.cls` means without guessing from the numbers (a quality class 2 is a valid grade too).
"""

from __future__ import annotations

from sightx.labels.grades import NAMES as GRADE_NAMES

GRADE = "grade"
QUALITY = "quality"
KINDS = (GRADE, QUALITY)
# EyeQ (Fu et al. 2019): Good, Usable (readable despite defects), Reject (a grader could not read it).
QUALITY_NAMES = ("Good", "Usable", "Reject")
REJECT = 2
NAMES = {GRADE: GRADE_NAMES, QUALITY: QUALITY_NAMES}
# What each training task learns from.
TASKS = {"grade": GRADE, "gradability": QUALITY}


def classes(kind: str) -> int:
    """How many classes a label kind has (the length of every per-class count list)."""
    return len(NAMES[kind])

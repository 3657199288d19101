"""The DR grading scale (the ICDR scale EyePACS uses): grade count, names, referable DR, the other eye."""

from __future__ import annotations

NUM_GRADES = 5
NAMES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative")
# Referable DR: moderate or worse (grade >= 2), the usual screening end-point.
REFERABLE = 2


def is_grade(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < NUM_GRADES


def other_eye(eye: str | None) -> str | None:
    """'left' <-> 'right'; None for an unknown eye."""
    return {"left": "right", "right": "left"}.get(eye or "")

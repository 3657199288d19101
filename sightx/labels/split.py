"""The patient-level split: both eyes of a patient on the same side, stratified by grade, seeded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    train: frozenset[str]
    val: frozenset[str]


def split_patients(patient_grades: dict[str, int], val_fraction: float, seed: int) -> Split:
    """Patient-level, grade-stratified split: both eyes always on the same side.

    Patients are ordered by grade (their worse eye), shuffled within each grade, and every
    1/val_fraction-th is taken (systematic sampling): the val share is exact overall and
    proportional within every grade, even the rare ones.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 0x5EED])
    patients = sorted(patient_grades)
    tiebreak = rng.permutation(len(patients))
    order = sorted(range(len(patients)), key=lambda i: (patient_grades[patients[i]], tiebreak[i]))
    offset = rng.random()
    val = {
        patients[i] for rank, i in enumerate(order) if np.floor((rank + 1) * val_fraction + offset) > np.floor(rank * val_fraction + offset)
    }
    return Split(train=frozenset(patients) - frozenset(val), val=frozenset(val))

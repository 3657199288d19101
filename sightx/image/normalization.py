"""The input statistics a model's pixels are scaled by: recorded in each checkpoint, so grading
scales photos exactly as training did. Plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Normalization:
    """Per-channel RGB mean and std (of pixel values in [0, 1]) that the model's inputs are scaled by."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# EyePACS' own statistics as Huang et al. 2023 report them (their open code trains with these).
EYEPACS = Normalization((0.426, 0.297, 0.213), (0.277, 0.202, 0.169))
NORMALIZATIONS = {"imagenet": IMAGENET, "eyepacs": EYEPACS}


def parse_normalization(spec: str) -> Normalization:
    """A name in NORMALIZATIONS, or 'M,M,M/S,S,S' (ValueError otherwise)."""
    if spec in NORMALIZATIONS:
        return NORMALIZATIONS[spec]
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"normalization {spec!r} is not one of {', '.join(NORMALIZATIONS)} nor M,M,M/S,S,S") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"normalization {spec!r} needs three means and three positive stds")
    return Normalization(mean, std)

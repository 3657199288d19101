"""What one doctor run is asked, and what one check measures for another (the shard size per image
the decoding check measures feeds the data checks' disk estimate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Mean shard sample at 512 px, q95, 4:2:0, measured on synthetic EyePACS (docs/guides/sharding.md: 93 KB); scaled
# by area for other sizes when the decoding check could not measure one (no numpy, say).
BYTES_AT_512 = 93_000


@dataclass
class Context:
    data: tuple[Path, ...] = ()
    size: int = 512  # sightx-shard --size the estimates are for
    out: Path = Path("shards")  # where sightx-shard would write
    download: bool = False  # a Kaggle download is planned: a missing token is a fail, not a warn
    quick: bool = False  # tiny compute step and photo: seconds, the rates mean little
    measured_bytes_per_image: float | None = field(default=None)

    def bytes_per_image(self) -> tuple[float, str]:
        """Estimated shard bytes per image at `size`, and where the number comes from."""
        if self.measured_bytes_per_image is not None:
            return self.measured_bytes_per_image, "measured on a generated photo"
        return BYTES_AT_512 * (self.size / 512) ** 2, "93 KB at 512 px, scaled by area"

"""The Python API: what the `sightx-*` commands do, as functions a notebook or a script calls.

Each function is the library call its command makes, with the command's defaults, paths given as
`str` or `Path`, progress bars off unless asked for, and a result that shows itself in a notebook
(`_repr_html_`) and keeps the plain data (`.manifest`, `.summary`, `.history`...) for code. The names
here are stable; the modules behind them are not part of the API.

Importing this module is cheap: each function imports what it needs when called, so
`from sightx import api` does not import torch, pandas or OpenCV.

The whole job on a small synthetic set (seconds on a CPU):

    >>> from sightx import api
    >>> download = api.synth("data/demo", n=40, seed=1, size=(640, 480), archive="kaggle", n_test=2)
    >>> download.path.name
    'diabetic-retinopathy-detection.zip'
    >>> shards = api.shard(download.path, "data/shards", size=128, shard_size=20, val_fraction=0.25)
    >>> shards.written + shards.rejected == 40
    True
    >>> api.verify("data/shards").ok
    True
    >>> run = api.train("data/shards", "data/run", arch="resnet18", image_size=64, epochs=1, batch_size=8, workers=0)
    >>> len(run.history)
    1
    >>> grader = api.Grader.from_checkpoint(run.best)
    >>> grader.grade("data/demo/photo.jpeg").grade in range(5)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from sightx.contracts.verify import Report

__all__ = ["Exploration", "Grade", "Grader", "Preprocessed", "Shards", "Synthetic", "Training"]
__all__ += ["explore", "predict", "preprocess", "shard", "synth", "train", "verify"]


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _img(data: bytes, kind: str = "jpeg", width: int = 256) -> str:
    return f"<img width='{width}' src='data:image/{kind};base64,{base64.b64encode(data).decode()}'/>"


@dataclass(frozen=True)
class Synthetic:
    """A synthetic download written by `synth`: where to point `shard` and what was drawn."""

    path: Path  # the folder, the competition zip (archive="kaggle") or the layout's image folder
    labels: Path | None  # the label file, or None where `shard` finds it itself
    train: int
    test: int
    corrupt: int
    grades: dict[int, int]

    def _repr_html_(self) -> str:
        return _table([("path", self.path), ("train", self.train), ("test", self.test), ("corrupt", self.corrupt), ("grades", self.grades)])


def synth(
    out: str | Path,
    n: int = 40,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    balanced: bool = False,
    corrupt: int = 0,
    n_test: int = 0,
    archive: str | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Synthetic:
    """Generate `n` synthetic fundus photos in the Kaggle layout under `out` (`sightx-synth`).

    Args:
        size: every photo at this (width, height); None: the EyePACS camera mix (2-16 MP, slower).
        balanced: equal grades instead of EyePACS's 73% grade 0; `corrupt`: broken files added.
        n_test: unlabelled photos in `test/`; the same `seed` gives byte-identical files.
        archive: "kaggle" packs the set as the competition zip; "aptos", "idrid", "messidor2", "ddr"
            lay it out as those sets are distributed; None leaves `train/` and `trainLabels.csv`.

    Example:
        >>> api.synth("data/small", n=6, seed=2, size=(480, 320)).train
        6
    """
    from sightx.synth.archive import write_kaggle
    from sightx.synth.generate import SynthOptions, generate
    from sightx.synth.layouts import write_layout

    out = Path(out)
    kw: dict[str, Any] = dict(seed=seed, balanced=balanced, workers=workers, corrupt=corrupt, n_test=n_test, progress=progress)
    summary = generate(out, SynthOptions(n=n, sizes=(size,) if size else None, **kw))
    path: Path = out
    labels: Path | None = out / "trainLabels.csv"
    if archive == "kaggle":
        path, labels = write_kaggle(out), None
    elif archive:
        written = write_layout(out, archive, seed)
        path, labels = written.images, written.labels
    return Synthetic(path, labels, summary.train, summary.test, summary.corrupt, dict(summary.grades))


@dataclass(frozen=True)
class Shards:
    """A shard folder written by `shard`: its manifest and the counts a notebook asks for first."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def written(self) -> int:
        return int(self.manifest["summary"]["written"])

    @property
    def rejected(self) -> int:
        return int(self.manifest["summary"]["rejected"])

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        """Split name -> its record: `count`, `shards`, `grades` (samples per class)."""
        return dict(self.manifest["splits"])

    def rejects(self) -> pd.DataFrame:
        """rejects.csv as a DataFrame: source, image, reason, detail (reasons: docs, on-disk formats)."""
        import pandas as pd

        from sightx.contracts.rejects import COLUMNS, read

        return pd.DataFrame([vars(r) for r in read(self.path)], columns=list(COLUMNS))

    def _repr_html_(self) -> str:
        rows = [("path", self.path), ("written", self.written), ("rejected", self.rejected)]
        rows += [(f"{name} (count, grades)", (s["count"], s.get("grades"))) for name, s in self.splits.items()]
        return _table(rows)


def shard(
    source: str | Path,
    out: str | Path,
    *,
    size: int = 512,
    shard_size: int = 1000,
    val_fraction: float = 0.1,
    seed: int = 0,
    labels: str | None = None,
    unlabeled: bool = False,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> Shards:
    """Preprocess the photos in `source` into WebDataset shards in `out` (`sightx-shard`).

    `source` is a folder, a zip, byte-split parts, the competition zip or a tar, read in place. The
    command's other options (normalisation, gates, Dask) are `sightx.shard.ShardOptions` fields.

    Example:
        >>> small = api.shard("data/small", "data/small-shards", size=128, shard_size=10, overwrite=True)
        >>> small.written
        6
    """
    from sightx.image.preprocess import PreprocessOptions
    from sightx.shard import ShardOptions, run

    kw: dict[str, Any] = dict(
        shard_size=shard_size, val_fraction=val_fraction, seed=seed, labels=labels, unlabeled=unlabeled, workers=workers
    )
    opts = ShardOptions(preprocess=PreprocessOptions(size=size), overwrite=overwrite, progress=progress, **kw)
    return Shards(Path(out), run(Path(source), Path(out), opts))


def verify(shards: str | Path, *, deep: bool = False) -> Report:
    """Check a shard folder against its manifest (`sightx-verify`); `.ok`, `.problems`."""
    from sightx.contracts.verify import verify as run_verify

    return run_verify(Path(shards), deep=deep)


@dataclass(frozen=True)
class Exploration:
    """A report written by `explore`: `summary` is summary.json (docs: summary.json), `charts` its PNGs."""

    out: Path
    summary: dict[str, Any] = field(repr=False)

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @property
    def charts(self) -> list[Path]:
        return sorted(self.out.glob("*.png"))

    def _repr_html_(self) -> str:
        head = _table([("kind", self.summary.get("kind")), ("report", self.report)])
        return head + "".join(_img(p.read_bytes(), "png", 480) for p in self.charts)


def explore(
    path: str | Path,
    out: str | Path,
    *,
    per_grade: int = 2,
    sample: int = 2000,
    seed: int = 0,
    labels: str | None = None,
    raw: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Exploration:
    """Report on raw photos or a shard folder into `out` (`sightx-explore`): HTML, PNG charts, summary.json.

    Example:
        >>> report = api.explore("data/small", "data/small-report", sample=0)
        >>> report.summary["kind"], report.report.name
        ('raw', 'report.html')
    """
    from sightx.explore import ExploreOptions
    from sightx.explore import explore as run_explore

    opts = ExploreOptions(
        per_grade=per_grade, seed=seed, sample=sample, workers=workers, labels=labels, raw=str(raw) if raw else None, progress=progress
    )
    return Exploration(Path(out), run_explore(Path(path), Path(out), opts))


@dataclass(frozen=True)
class Training:
    """A finished `train` run: its folder, checkpoints and per-epoch metrics."""

    out: Path
    history: list[dict[str, Any]] = field(repr=False)

    @property
    def best(self) -> Path:
        """best.pt: the epoch with the best validation QWK (Reject AUC for a gradability model)."""
        return self.out / "best.pt"

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    def metrics(self) -> pd.DataFrame:
        """One row per epoch: epoch, train loss, and the validation kappa, accuracy and referable AUC where present."""
        import pandas as pd

        rows = []
        for h in self.history:
            val = h.get("val") or {}
            rows.append(
                {
                    "epoch": h.get("epoch"),
                    "loss": (h.get("train") or {}).get("loss"),
                    "kappa": val.get("kappa"),
                    "accuracy": val.get("accuracy"),
                }
            )
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        return _table([("run", self.out), ("epochs", len(self.history))]) + self.metrics().to_html(index=False)


def train(shards: str | Path, out: str | Path, *, recipe: str | None = None, progress: bool = False, **options: Any) -> Training:
    """Train a grader on `shards` into `out` (`sightx-train`); `options` are the command's options
    as `sightx.train.TrainConfig` fields (`arch`, `image_size`, `epochs`, `batch_size`, `lr`, ...).

    A `recipe` sets a published recipe's options first; `options` still win. Raises TrainError
    (one line) for an unknown option or recipe.
    """
    from sightx.train import train as run_train
    from sightx.train.recipes import resolve

    cfg = resolve(recipe, {"shards": str(shards), "out": str(out), "progress": progress, **options})
    return Training(Path(out), run_train(cfg))


@dataclass(frozen=True)
class Grade:
    """One photo's grade: `grade` 0-4, its `name`, the class `probabilities`, the referable call,
    quality `warnings` (codes: docs, server warnings) and the preprocessed field the model saw."""

    source: str
    grade: int
    probabilities: tuple[float, ...]
    referable: bool
    referable_score: float
    warnings: tuple[str, ...]
    field_jpeg: bytes = field(repr=False)

    @property
    def name(self) -> str:
        from sightx.labels.grades import NAMES

        return NAMES[self.grade]

    def _repr_html_(self) -> str:
        probs = " ".join(f"{p:.2f}" for p in self.probabilities)
        rows = [("photo", self.source), ("grade", f"{self.grade} ({self.name})"), ("probabilities 0-4", probs)]
        rows += [("referable", f"{self.referable} ({self.referable_score:.2f})"), ("warnings", ", ".join(self.warnings) or "none")]
        return f"<div style='display:flex;gap:1em'>{_img(self.field_jpeg)}{_table(rows)}</div>"


class Grader:
    """A trained checkpoint ready to grade photos with the preprocessing it was trained on.

    Example:
        >>> grader = api.Grader.from_checkpoint("data/run/best.pt", device="cpu")
        >>> result = grader.grade("data/small/train/" + sorted(os.listdir("data/small/train"))[0])
        >>> result.grade in range(5), len(result.probabilities)
        (True, 5)
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        from sightx.inference.grader import Grader as _Grader

        self.checkpoint = Path(checkpoint)
        self._grader = _Grader(self.checkpoint, device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "auto") -> Grader:
        """Load best.pt or last.pt from `train` / `sightx-train`; `device`: auto, cpu, cuda, mps."""
        return cls(checkpoint, device)

    def grade(self, photo: str | Path | bytes) -> Grade:
        """Grade one photo: a file path or its bytes (JPEG, PNG or TIFF)."""
        data = photo if isinstance(photo, bytes) else Path(photo).read_bytes()
        g = self._grader.grade_bytes(data)
        probs = tuple(float(p) for p in g.output.reshape(-1))
        source = "<bytes>" if isinstance(photo, bytes) else str(photo)
        return Grade(source, g.grade, probs, g.referable, g.referable_score, g.photo.warnings, g.photo.jpeg)

    def __repr__(self) -> str:
        return f"Grader({str(self.checkpoint)!r}, device={str(self._grader.device)!r})"


def predict(
    inputs: Iterable[str | Path], checkpoint: str | Path, *, batch_size: int = 32, workers: int = 1, device: str = "auto"
) -> pd.DataFrame:
    """Grade photos, folders, zips or shards with a checkpoint (`sightx-predict`): one row per image,
    Kaggle's `image,level` columns first, then the probabilities, warnings and any error."""
    import pandas as pd

    from sightx.inference.grader import Grader as _Grader
    from sightx.inference.predict import grade_inputs

    rows = grade_inputs(
        _Grader(Path(checkpoint), device), [Path(p) for p in inputs], batch_size=batch_size, workers=workers, progress=False
    )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Preprocessed:
    """A photo before and after SightX's preprocessing: `original` and `image` are RGB arrays,
    `info` what preprocessing measured (field circle, brightness, sharpness, gradability)."""

    original: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)
    jpeg: bytes = field(repr=False)
    info: dict[str, Any] = field(repr=False)

    def _repr_html_(self) -> str:
        from sightx.image.codec import encode

        return f"<div style='display:flex;gap:1em'>{_img(encode(self.original, 90))}{_img(self.jpeg)}</div>"


def preprocess(photo: str | Path | bytes, *, size: int = 512, normalize: str = "graham") -> Preprocessed:
    """What `sightx-shard` does to one photo: decode, find the field of view, crop, resize, normalise.
    Raises Rejected (with the rejects.csv reason) for a photo a shard would reject.

    Example:
        >>> photo = "data/small/train/" + sorted(os.listdir("data/small/train"))[0]
        >>> api.preprocess(photo, size=128).image.shape
        (128, 128, 3)
    """
    from sightx.image.preprocess import PreprocessOptions, decode_bytes, preprocess_decoded

    data = photo if isinstance(photo, bytes) else Path(photo).read_bytes()
    opts = PreprocessOptions(size=size, normalize=normalize)
    decoded = decode_bytes(data, opts)
    processed = preprocess_decoded(decoded, opts)
    return Preprocessed(decoded.image, processed.image, processed.jpeg, processed.info)

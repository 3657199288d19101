"""Grade new images with a trained checkpoint, through exactly the training preprocessing.

Raw photos go through `preprocess_bytes` with the options stored in the checkpoint (the same
function and options sightx-shard used), are JPEG-encoded and decoded exactly as stored in a
shard, then see the validation transform: no train/serve skew. Shards are read as they are.
"""

from __future__ import annotations

import csv
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sightx import codec, heads
from sightx.atomic import atomic_write_text
from sightx.augment import EvalTransform
from sightx.contracts import checkpoint as ckpt
from sightx.contracts import sample
from sightx.errors import Rejection, describe
from sightx.grades import NUM_GRADES, other_eye
from sightx.labels import find_images, image_id, patient_eye
from sightx.model import autocast, autocast_dtype, build_model, pick_device
from sightx.pool import ordered_map
from sightx.preprocess import PreprocessOptions, preprocess_bytes
from sightx.stream import normalize_batch

# Share of the other eye in a blended prediction (both eyes of a patient are strongly correlated).
OTHER_EYE_WEIGHT = 0.25


@dataclass(frozen=True)
class Item:
    """One input: preprocessed JPEG bytes, or why there are none."""

    image: str
    jpeg: bytes | None
    error: str = ""


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split inputs into raw images and shard tars; folders are searched recursively."""
    images, shards = [], []
    for p in paths:
        if p.is_dir():
            images += find_images(p)
            shards += sorted(p.rglob("*.tar"))
        elif p.suffix == ".tar":
            shards.append(p)
        else:
            images.append(p)
    return images, shards


def _preprocess_file(args: tuple[str, PreprocessOptions]) -> Item:
    """Worker: read and preprocess one raw image; errors become a row, not a crash."""
    path, opts = args
    name = image_id(Path(path))
    try:
        return Item(name, preprocess_bytes(Path(path).read_bytes(), opts).jpeg)
    except OSError as e:
        return Item(name, None, f"unreadable: {e.strerror or e}")
    except Rejection as e:
        return Item(name, None, str(e))
    except Exception as e:  # one odd file must not stop a batch job
        return Item(name, None, f"error: {describe(e)}")


def _shard_items(path: Path) -> Iterator[Item]:
    """Samples of a shard as stored (already preprocessed); a broken shard becomes an error row."""
    try:
        for key, parts in sample.read_samples(path):
            try:
                image = str(sample.meta_of(parts).get("image", key))
            except sample.SampleError:
                image = key
            try:
                yield Item(image, sample.image_of(parts))
            except sample.SampleError as e:
                yield Item(image, None, str(e))
    except (OSError, tarfile.TarError) as e:
        yield Item(path.name, None, f"unreadable shard: {e}")


class Predictor:
    """A checkpoint ready for inference, with the preprocessing it was trained on."""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        state = ckpt.load(checkpoint)
        self.head = heads.get(state.head)
        self.image_size = state.image_size
        self.thresholds = list(state.thresholds)
        self.preprocess = PreprocessOptions.from_dict(state.preprocess)
        self.device = pick_device(device)
        self.model = build_model(state.arch, state.head).to(self.device).eval()
        try:
            self.model.load_state_dict(state.model)
        except RuntimeError:
            raise ckpt.CheckpointError(f"{checkpoint}: its weights do not fit a {state.arch} with a {state.head} head") from None
        self.amp = autocast_dtype(self.device, "auto")
        self.transform = EvalTransform(self.image_size)

    def tensor(self, jpeg: bytes) -> torch.Tensor:
        """A stored sample as the model sees it at validation; CodecError if it is not a JPEG."""
        return self.transform(sample.decode_sample(jpeg))

    @torch.no_grad()
    def outputs(self, images: list[torch.Tensor]) -> np.ndarray:
        """Per-grade probabilities (classify) or scores (regress) for tensors from `tensor`."""
        x = normalize_batch(torch.stack(images), self.device, channels_last=False)
        with autocast(self.device, self.amp):
            out = self.model(x)
        return self.head.activate(out).cpu().numpy()

    def grades(self, out: np.ndarray) -> np.ndarray:
        return self.head.grades(out, self.thresholds)


def predict(
    inputs: list[Path],
    checkpoint: Path,
    *,
    batch_size: int = 32,
    workers: int = 1,
    device: str = "auto",
    blend_eyes: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per input image: image, level, probabilities or score, error."""
    predictor = Predictor(checkpoint, device)
    raw, shards = expand_inputs(inputs)
    items = ordered_map(_preprocess_file, [(str(p), predictor.preprocess) for p in raw], workers)
    stream = (item for source in (items, *(_shard_items(s) for s in shards)) for item in source)
    rows: list[dict[str, Any]] = []
    batch: list[Item] = []
    bar = tqdm(desc="predict", unit="img", disable=not progress)

    def flush() -> None:
        tensors: dict[int, torch.Tensor] = {}
        errors: dict[int, str] = {}
        for i, b in enumerate(batch):
            if b.jpeg is None:
                continue
            try:
                tensors[i] = predictor.tensor(b.jpeg)
            except codec.CodecError as e:  # a corrupt sample inside a shard
                errors[i] = f"corrupt sample: {e}"
        out: Any = predictor.outputs(list(tensors.values())) if tensors else []
        results = dict(zip(tensors, out))
        for i, b in enumerate(batch):
            rows.append({"image": b.image, "output": results.get(i), "error": errors.get(i, b.error)})
        bar.update(len(batch))
        batch.clear()

    for item in stream:
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    flush()
    bar.close()
    if blend_eyes:
        _blend(rows)
    return [_row(r, predictor) for r in rows]


def _blend(rows: list[dict[str, Any]]) -> None:
    """Mix in the other eye's output: lesions of one eye raise the odds for the other."""
    by_eye = {patient_eye(r["image"]): r["output"] for r in rows if r["output"] is not None}
    for r in rows:
        patient, eye = patient_eye(r["image"])
        other = by_eye.get((patient, other_eye(eye)))
        if r["output"] is not None and other is not None:
            r["output"] = (1 - OTHER_EYE_WEIGHT) * r["output"] + OTHER_EYE_WEIGHT * other


def _row(r: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    out = r["output"]
    row: dict[str, Any] = {"image": r["image"], "level": ""}
    if predictor.head.width > 1:
        row.update({f"p{g}": "" if out is None else round(float(out[g]), 6) for g in range(NUM_GRADES)})
    else:
        row["score"] = "" if out is None else round(float(out), 6)
    if out is not None:
        row["level"] = int(predictor.grades(np.asarray(out)[None])[0])
    row["error"] = r["error"]
    return row


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Kaggle's submission columns first (image,level), then probabilities and errors."""
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["image", "level", "error"]
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())

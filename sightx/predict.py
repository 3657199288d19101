"""Grade new images with a trained checkpoint, through exactly the training preprocessing.

Raw photos go through `preprocess_bytes` with the options stored in the checkpoint (the same
function and options sightx-shard used), are JPEG-encoded and decoded exactly as stored in a
shard, then see the validation transform: no train/serve skew. Shards are read as they are.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sightx import codec, metrics, pillow_codec
from sightx.atomic import atomic_write_text
from sightx.augment import EvalTransform
from sightx.codec import CodecError
from sightx.errors import Rejection
from sightx.labels import find_images, image_id, patient_eye
from sightx.model import autocast_dtype, build_model, pick_device
from sightx.pool import bounded_map, ordered_map
from sightx.preprocess import PreprocessOptions, Rejected, preprocess_bytes
from sightx.shard.reader import read_samples
from sightx.sources import Source, is_archive, open_source
from sightx.stream import normalize_batch
from sightx.train import load_checkpoint

# Share of the other eye in a blended prediction (both eyes of a patient are strongly correlated).
OTHER_EYE_WEIGHT = 0.25


@dataclass(frozen=True)
class Item:
    """One input: preprocessed JPEG bytes, or why there are none."""

    image: str
    jpeg: bytes | None
    error: str = ""


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[Path], list[Source]]:
    """Split inputs into raw images, shard tars and archives of raw images (zip, split parts, the
    competition zip's test images, compressed tars); folders are searched recursively."""
    images, shards, archives = [], [], []
    for p in paths:
        if is_archive(p):
            archives.append(open_source(p, unlabeled=True))
        elif p.is_dir():
            images += find_images(p)
            shards += sorted(p.rglob("*.tar"))
        elif p.suffix == ".tar":
            shards.append(p)
        else:
            images.append(p)
    return images, shards, archives


def _graded_input(name: str, data: bytes | Rejection, opts: PreprocessOptions) -> Item:
    """One raw image's bytes, preprocessed; errors become a row, not a crash."""
    image = image_id(PurePosixPath(name))
    if isinstance(data, Rejection):
        return Item(image, None, str(data))
    try:
        return Item(image, preprocess_bytes(data, opts, pillow_codec.decodes(name)).jpeg)
    except Rejected as e:
        return Item(image, None, str(e))
    except Exception as e:  # one odd file must not stop a batch job
        return Item(image, None, f"error: {type(e).__name__}: {e}".splitlines()[0])


def _preprocess_file(args: tuple[str, PreprocessOptions]) -> Item:
    """Worker: read and preprocess one raw image file."""
    path, opts = args
    try:
        data: bytes | Rejection = Path(path).read_bytes()
    except OSError as e:
        data = Rejection("unreadable", e.strerror or str(e))
    return _graded_input(Path(path).name, data, opts)


def _preprocess_member(args: tuple[Source, str, PreprocessOptions]) -> Item:
    """Worker: read one member of a random-access archive (opened once per worker) and preprocess it."""
    source, name, opts = args
    try:
        data: bytes | Rejection = source.read(name)
    except Rejection as e:
        data = e
    return _graded_input(name, data, opts)


def _preprocess_streamed(args: tuple[str, bytes | Rejection, PreprocessOptions]) -> Item:
    return _graded_input(*args)


def _archive_items(source: Source, opts: PreprocessOptions, workers: int) -> Iterator[Item]:
    """The images of an archive, in listing order for random access, archive order for a stream."""
    names = [m.name for m in source.members()]
    if source.random_access:
        yield from bounded_map(_preprocess_member, ((source, n, opts) for n in names), workers)
    else:
        yield from bounded_map(_preprocess_streamed, ((n, data, opts) for n, data in source.stream(names)), workers)


def _shard_items(path: Path) -> Iterator[Item]:
    """Samples of a shard as stored (already preprocessed); a broken shard becomes an error row."""
    try:
        for key, parts in read_samples(path):
            try:
                image = json.loads(parts["json"]).get("image", key) if "json" in parts else key
            except (ValueError, AttributeError):
                image = key
            yield Item(image, parts.get("jpg"), "" if "jpg" in parts else "no .jpg in sample")
    except (OSError, tarfile.TarError) as e:
        yield Item(path.name, None, f"unreadable shard: {e}")


class Predictor:
    """A checkpoint ready for inference, with the preprocessing it was trained on."""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        state = load_checkpoint(checkpoint)
        self.head = state["head"]
        self.image_size = state["image_size"]
        self.thresholds = tuple(state["thresholds"])
        self.preprocess = PreprocessOptions.from_dict(state["preprocess"])
        self.device = pick_device(device)
        self.model = build_model(state["arch"], self.head).to(self.device).eval()
        self.model.load_state_dict(state["model"])
        self.amp = autocast_dtype(self.device, "auto")
        self.transform = EvalTransform(self.image_size)

    def tensor(self, jpeg: bytes) -> torch.Tensor:
        """A stored sample as the model sees it at validation; CodecError if it is not a JPEG."""
        return self.transform(codec.decode(jpeg)[0])

    @torch.no_grad()
    def outputs(self, images: list[torch.Tensor]) -> np.ndarray:
        """Per-grade probabilities (classify) or scores (regress) for tensors from `tensor`."""
        x = normalize_batch(torch.stack(images), self.device, channels_last=False)
        with torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext():
            out = self.model(x).float()
        return (out.softmax(1) if self.head == "classify" else out.squeeze(1)).cpu().numpy()

    def grades(self, out: np.ndarray) -> np.ndarray:
        if self.head == "classify":
            return out.argmax(1)
        return metrics.apply_thresholds(out, self.thresholds)


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
    raw, shards, archives = expand_inputs(inputs)
    items = ordered_map(_preprocess_file, [(str(p), predictor.preprocess) for p in raw], workers)
    from_archives = (_archive_items(a, predictor.preprocess, workers) for a in archives)
    stream = (item for source in (items, *from_archives, *(_shard_items(s) for s in shards)) for item in source)
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
            except CodecError as e:  # a corrupt sample inside a shard
                errors[i] = f"corrupt sample: {e}"
        out = predictor.outputs(list(tensors.values())) if tensors else []
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
        other = by_eye.get((patient, {"left": "right", "right": "left"}.get(eye or "", "")))
        if r["output"] is not None and other is not None:
            r["output"] = (1 - OTHER_EYE_WEIGHT) * r["output"] + OTHER_EYE_WEIGHT * other


def _row(r: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    out = r["output"]
    row: dict[str, Any] = {"image": r["image"], "level": ""}
    if predictor.head == "classify":
        row.update({f"p{g}": "" if out is None else round(float(out[g]), 6) for g in range(5)})
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

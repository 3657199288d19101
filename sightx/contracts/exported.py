"""Exported models: the facts a checkpoint carries besides its weights, written into an .onnx's (or a .pt2's)
metadata and a hub folder's config.json, and read back from them; the hub folder itself.

A hub folder is `config.json` (the checkpoint's fields: architecture, head, input size, preprocessing,
normalisation, thresholds, validation), `model.safetensors` (the weights: tensors only, nothing in the file
can run) and `README.md` (the model card, written by sightx.export.card). Everything read back goes through
`checkpoint.from_state`, the checks a .pt gets, so a malformed file is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from sightx.contracts.checkpoint import TRAINING_KEYS, Checkpoint, CheckpointError, from_state
from sightx.files.atomic import atomic_write_bytes, atomic_write_text
from sightx.models.hub_weights import HF_PREFIX

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
# The metadata keys of an exported .onnx / .pt2, each a JSON value (the checkpoint's own field names).
META_KEYS = ("format", "version", "task", "arch", "head", "image_size", "preprocess", "normalization", "thresholds", "epoch", "val")


def _jsonable(value: Any) -> Any:
    """JSON's subset of `value` (tuples become lists, anything else becomes its text)."""
    return json.loads(json.dumps(value, default=str))


def temperature(checkpoint: Checkpoint) -> float | None:
    """The softmax temperature of a calibrated checkpoint (sightx-evaluate --fit-temperature), or one a run
    recorded in its config or validation, when there is one."""
    if checkpoint.temperature is not None:
        return float(checkpoint.temperature)
    for where in (checkpoint.config, checkpoint.val or {}):
        t = where.get("temperature") if isinstance(where, dict) else None
        if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and t > 0:
            return float(t)
    return None


def facts(checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything of a checkpoint but its weights and training state, as JSON-ready data."""
    state = checkpoint.to_dict()
    for key in ("model", *TRAINING_KEYS):
        state.pop(key, None)
    out = _jsonable(state)
    t = temperature(checkpoint)
    if t is not None:
        out["temperature"] = t
    out["source_sha256"] = checkpoint.sha256
    return out


def metadata(checkpoint: Checkpoint) -> dict[str, str]:
    """The string key/value metadata an .onnx or .pt2 carries: each fact JSON-encoded under its own name."""
    return {key: json.dumps(value) for key, value in facts(checkpoint).items()}


def from_metadata(meta: dict[str, str], where: str, sha256: str = "") -> Checkpoint:
    """The checkpoint facts (no weights) an export's metadata holds; CheckpointError (one line) otherwise."""
    if "format" not in meta:
        raise CheckpointError(f"{where}: no SightX metadata (export it with sightx-export)")
    state: dict[str, Any] = {}
    for key in (*META_KEYS, "config", "temperature"):
        if key in meta:
            try:
                state[key] = json.loads(meta[key])
            except (TypeError, ValueError):
                raise CheckpointError(f"{where}: metadata {key!r} is not JSON") from None
    return from_state({**state, "model": {}}, where, sha256 or str(json.loads(meta.get("source_sha256", '""')) or ""))


def read_onnx(path: Path) -> tuple[Checkpoint, Any]:
    """The facts in an .onnx's metadata and the parsed model (onnx.ModelProto); one line for anything else."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{path}: reading an .onnx needs the onnx package: pip install 'sightx[export]'") from None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # a protobuf that does not parse: data, refused
        raise CheckpointError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    if not model.graph.input or not model.graph.output:
        raise CheckpointError(f"{path}: not an ONNX model (no graph inputs or outputs)")
    meta = {p.key: p.value for p in model.metadata_props}
    return from_metadata(meta, str(path), hashlib.sha256(data).hexdigest()), model


def save_hub(folder: Path, checkpoint: Checkpoint, card: str) -> None:
    """config.json, model.safetensors and README.md in `folder` (made if missing)."""
    try:
        from safetensors.torch import save as save_tensors
    except ImportError:
        raise CheckpointError(f"{folder}: writing a model folder needs safetensors: pip install 'sightx[export]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in checkpoint.model.items()}
    atomic_write_bytes(folder / WEIGHTS, save_tensors(weights, metadata={"format": "pt"}))
    atomic_write_text(folder / CONFIG, json.dumps({**facts(checkpoint), "library": "sightx", "weights": WEIGHTS}, indent=1) + "\n")
    atomic_write_text(folder / CARD, card)


def is_hub(source: str | Path) -> bool:
    """A hub folder on disk, or an `hf-hub:owner/name` reference."""
    return str(source).startswith(HF_PREFIX) or Path(source).is_dir()


def load_hub(folder: Path) -> Checkpoint:
    """A hub folder as a checkpoint with its weights; CheckpointError (one line) if anything is missing or malformed."""
    try:
        text = (folder / CONFIG).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {CONFIG}: not a SightX model folder (sightx-export --format hub)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {folder / CONFIG}: {type(e).__name__}") from None
    try:
        config = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{folder / CONFIG}: not JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / CONFIG}: not a SightX config")
    try:
        data = (folder / WEIGHTS).read_bytes()
    except OSError:
        raise CheckpointError(f"{folder}: no readable {WEIGHTS}") from None
    try:
        from safetensors.torch import load as load_tensors

        weights = load_tensors(data)  # safetensors: a header and raw tensors, nothing that runs
    except ImportError:
        raise CheckpointError(f"{folder}: reading a model folder needs safetensors: pip install safetensors") from None
    except Exception as e:
        raise CheckpointError(f"{folder / WEIGHTS}: not a safetensors file ({type(e).__name__})") from None
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{folder / WEIGHTS}: not tensors")
    return from_state({**config, "model": weights}, str(folder), hashlib.sha256(data).hexdigest())

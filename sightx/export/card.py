"""The model card of a hub folder (README.md), written from what the run recorded: the architecture and
inputs, the data it was trained on (the shard manifest, where it can still be read), the validation
metrics with their split, what the model is for and what it has not seen, and the licence of the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightx.contracts import manifest
from sightx.contracts.checkpoint import Checkpoint
from sightx.contracts.exported import temperature
from sightx.errors import SightXError
from sightx.labels.grades import NAMES

# The terms the public DR sets come under (as their publishers state them); the user's --data-license wins.
LICENSES = {
    "eyepacs": "EyePACS via the Kaggle Diabetic Retinopathy Detection competition (2015): the competition's rules, "
    "non-commercial research use; no redistribution of the photos",
    "aptos": "APTOS 2019 Blindness Detection (Kaggle): the competition's rules, non-commercial research use",
    "idrid": "IDRiD (IEEE Dataport): Creative Commons Attribution 4.0",
    "messidor2": "Messidor-2 (ADCIS / LaTIM): research use under the publisher's licence agreement",
    "ddr": "DDR (Nankai University): research use, citing Li et al. 2019",
    "eyeq": "EyeQ (a subset of EyePACS): the EyePACS terms, non-commercial research use",
    "synthetic": "synthetic photos made by sightx-synth: no restriction",
}
UNKNOWN_LICENSE = "not recorded: state the licence of the photos this model was trained on before sharing it"


def _manifest(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The training shards' manifest, if the run's shard folder is still readable here."""
    where = checkpoint.config.get("manifest") or checkpoint.config.get("shards")
    if not isinstance(where, str) or "://" in where or where.startswith("pipe:"):
        return None
    try:
        return manifest.read(Path(where))
    except (SightXError, OSError, ValueError):
        return None


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _training(checkpoint: Checkpoint) -> str:
    cfg = checkpoint.config
    parts = [f"best epoch {checkpoint.epoch}" + (f" of {cfg['epochs']}" if "epochs" in cfg else "")]
    for key, name in (("weights", "initial weights"), ("recipe", "recipe"), ("balance", "class balance"), ("lr", "learning rate")):
        if key in cfg:
            parts.append(f"{name} {cfg[key]}")
    return ", ".join(parts)


def _data(checkpoint: Checkpoint, found: dict[str, Any] | None) -> list[str]:
    lines = [f"- shards: `{checkpoint.config.get('shards', 'not recorded')}`"]
    lines.append(f"- preprocessing (sightx-shard): `{checkpoint.preprocess}`")
    if found:
        for split, info in sorted(found.get("splits", {}).items()):
            grades = info.get("grades")
            by_grade = ", ".join(f"{n} {name}" for n, name in zip(grades, NAMES)) if isinstance(grades, list) else "not recorded"
            lines.append(f"- {split}: {info.get('count', '?')} photos ({by_grade})")
    else:
        lines.append("- split sizes: the shard manifest was not readable at export")
    return lines


def _metrics(checkpoint: Checkpoint) -> list[str]:
    val = checkpoint.val or {}
    if not val:
        return ["No validation metrics were recorded with this checkpoint."]
    ref = val.get("referable") or {}
    base = val.get("baseline") or {}
    rows = [
        ("photos", val.get("n")),
        ("quadratic weighted kappa", val.get("kappa")),
        ("accuracy", val.get("accuracy")),
        ("referable DR (grade >= 2) sensitivity", ref.get("sensitivity")),
        ("referable DR specificity", ref.get("specificity")),
        ("referable DR AUROC", ref.get("auc")),
        ("accuracy of always answering the majority grade", base.get("accuracy")),
    ]
    lines = [
        f"On the **validation split** of the training shards (patients held out by sightx-shard's patient split; "
        f"epoch {checkpoint.epoch}). Not a test set: the checkpoint was chosen on it, so these figures are optimistic.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    return lines + [f"| {name} | {_number(value)} |" for name, value in rows]


def model_card(checkpoint: Checkpoint, license: str | None = None, dataset: str | None = None) -> str:
    """README.md for a hub folder, with the Hugging Face front matter."""
    found = _manifest(checkpoint)
    data_license = license or LICENSES.get(dataset or "", UNKNOWN_LICENSE)
    t = temperature(checkpoint)
    norm = checkpoint.normalization
    inputs = f"{checkpoint.image_size} px RGB, normalised with mean {list(norm.mean)} std {list(norm.std)}"
    return "\n".join(
        [
            "---",
            "library_name: sightx",
            "tags: [diabetic-retinopathy, fundus, image-classification]",
            "---",
            f"# SightX diabetic-retinopathy grader ({checkpoint.arch}, {checkpoint.head} head)",
            "",
            "## Model",
            f"- architecture: torchvision `{checkpoint.arch}` with a `{checkpoint.head}` head ({len(NAMES)} grades: {', '.join(NAMES)})",
            f"- task: {checkpoint.task}; input: {inputs}",
            *([f"- grade thresholds on the score: {checkpoint.thresholds}"] if checkpoint.head == "regress" else []),
            *([f"- softmax temperature: {t}"] if t else []),
            f"- trained by `sightx-train`: {_training(checkpoint)}; source checkpoint sha256 `{checkpoint.sha256[:16]}`",
            "",
            "## Data",
            *_data(checkpoint, found),
            f"- licence of the data: {data_license}",
            "",
            "## Metrics",
            *_metrics(checkpoint),
            "",
            "## Intended use",
            "A screening aid, not a diagnosis: it ranks fundus photos for review by a qualified grader or",
            "ophthalmologist and must not decide care on its own. Every grade comes with quality warnings",
            "(no field of view found, too dark, blurred, cut off, possibly ungradable); read them.",
            "",
            "## Limits",
            "- Populations and cameras not in the training data have not been seen: its accuracy on them is unknown",
            "  and must be measured locally before use.",
            "- Gradability: on ungradable photos (dark, blurred, cut-off fields) it still answers a grade; the warnings",
            "  say when a photo may be unreadable, the model does not.",
            "- One photo per eye; no other eye disease is graded.",
            "",
            "## Use",
            "```",
            "pip install sightx",
            "sightx-predict photos/ --checkpoint THIS_FOLDER            # or hf-hub:OWNER/NAME once pushed",
            "sightx-serve --checkpoint THIS_FOLDER",
            "huggingface-cli upload OWNER/NAME THIS_FOLDER .            # your own account: SightX never pushes",
            "```",
            "",
        ]
    )

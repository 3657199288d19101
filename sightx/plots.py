"""Training charts as PNG files (matplotlib, Agg backend, fixed size so outputs are comparable)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sightx.atomic import atomic_write_bytes  # noqa: E402


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def confusion_png(confusion: list[list[int]], path: Path, title: str) -> None:
    """Counts with row-normalised shading: the diagonal is per-grade recall."""
    cm = np.asarray(confusion)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def learning_curve_png(history: list[dict[str, Any]], path: Path) -> None:
    """Losses and validation kappa per epoch, with the always-majority baseline for scale."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    if all("val" in h for h in history):
        left.plot(epochs, [h["val"]["loss"] for h in history], "o-", label="val loss")
        right.plot(epochs, [h["val"]["kappa"] for h in history], "o-", label="val quadratic kappa")
        right.plot(epochs, [h["val"]["accuracy"] for h in history], "s--", label="val accuracy")
        right.plot(epochs, [h["val"]["baseline"]["accuracy"] for h in history], ":", color="grey", label="always-majority accuracy")
        right.axhline(0, color="grey", lw=0.8)
    left.set_xlabel("epoch")
    right.set_xlabel("epoch")
    left.legend()
    right.legend(loc="lower right")
    right.set_ylim(-0.1, 1.0)
    fig.tight_layout()
    _save(fig, path)

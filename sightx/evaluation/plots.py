"""Charts as PNG files: the one matplotlib set-up (Agg, imported on first use) and the training charts.

matplotlib is imported only when something draws, so importing a module that can draw (the trainer,
the exploration report) costs nothing until it does, and worker processes never pay for it.
Fixed figure sizes keep outputs comparable between runs.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sightx.files.atomic import atomic_write_bytes

DPI = 100


@functools.cache
def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend, configured once per process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(**kwargs: Any) -> Iterator[Any]:
    """A pyplot figure that is closed however the drawing ends (pyplot keeps open figures alive)."""
    plt = pyplot()
    fig = plt.figure(**kwargs)
    try:
        yield fig
    finally:
        plt.close(fig)


def save_png(fig: Any, path: Path, dpi: int = DPI) -> None:
    """Render to memory, then write atomically: a reader never sees half a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def confusion_png(confusion: list[list[int]], path: Path, title: str) -> None:
    """Counts with row-normalised shading: the diagonal is per-grade recall."""
    cm = np.asarray(confusion)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    with figure(figsize=(5, 4.5)) as fig:
        ax = fig.subplots()
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
        save_png(fig, path)


def learning_curve_png(history: list[dict[str, Any]], path: Path) -> None:
    """Losses and validation kappa per epoch, with the always-majority baseline for scale."""
    epochs = [h["epoch"] for h in history]
    with figure(figsize=(10, 4)) as fig:
        left, right = fig.subplots(1, 2)
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
        save_png(fig, path)

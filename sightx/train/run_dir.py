"""The run folder: metrics.jsonl (one line per epoch), the charts, TensorBoard, and the printed report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sightx.evaluation import metrics
from sightx.files.atomic import atomic_write_text
from sightx.train.config import TrainError

METRICS = "metrics.jsonl"


class RunDir:
    def __init__(self, out: Path, *, tensorboard: bool, main: bool) -> None:
        self.out = out
        self.main = main
        if main:
            out.mkdir(parents=True, exist_ok=True)
        self.writer = _tensorboard(out) if tensorboard and main else None

    def read_history(self) -> list[dict[str, Any]]:
        path = self.out / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_config(self, config: dict[str, Any]) -> None:
        """config.json: the resolved options of the run (recipe, defaults and flags as applied)."""
        if self.main:
            atomic_write_text(self.out / "config.json", json.dumps(config, indent=1, sort_keys=True) + "\n")

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Another record of the run (weights.json: what --weights FILE loaded, missed and ignored)."""
        if self.main:
            atomic_write_text(self.out / name, json.dumps(data, indent=1) + "\n")

    def write_history(self, history: list[dict[str, Any]]) -> None:
        if self.main:
            atomic_write_text(self.out / METRICS, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))

    def report(self, history: list[dict[str, Any]], epochs: int, progress: bool) -> None:
        """Charts and TensorBoard scalars for the last epoch; its metrics printed when `progress`."""
        from sightx.evaluation.plots import confusion_png, learning_curve_png  # matplotlib only when a run draws

        row = history[-1]
        val = row.get("val")
        learning_curve_png(history, self.out / "learning_curve.png")
        quality = val is not None and "reject" in val  # a gradability run (metrics.quality_evaluate)
        if val is not None:
            auc = (val.get("reject") or {}).get("auc")
            title = f"epoch {row['epoch']}: " + (
                f"Reject AUC {auc if auc is None else round(auc, 3)}" if quality else f"QWK {val['kappa']:.3f}"
            )
            confusion_png(val["confusion"], self.out / "confusion.png", title)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", row["train_loss"], row["epoch"])
            if val is not None:
                self.writer.add_scalar("val/kappa", val["kappa"], row["epoch"])
                self.writer.add_scalar("val/loss", val["loss"], row["epoch"])
        if progress:
            print(
                f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, "
                f"{row['images_per_s']} img/s, data wait {row['data_wait']:.0%}, lr {row['lr']:.2e}"
                + (f", {row['ungradable_skipped']} below --min-gradability skipped" if "ungradable_skipped" in row else ""),
                flush=True,
            )
            if val is not None:
                print((metrics.format_quality_report if quality else metrics.format_report)(val), flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))

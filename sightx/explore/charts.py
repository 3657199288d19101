"""The report's matplotlib charts, drawn from computed statistics into a figure Report.chart provides.

This module imports no matplotlib itself: the figure comes in, so nothing is loaded until a chart is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sightx.explore.common import class_labels, pct
from sightx.explore.raw import OVER_EXPOSED, TOO_DARK
from sightx.labels.kinds import GRADE, QUALITY

GRADE_COLORS = ("#4c9a5f", "#c9b23c", "#e08a2c", "#c8452f", "#7b2d6b")
COLORS = {GRADE: GRADE_COLORS, QUALITY: ("#4c9a5f", "#c9b23c", "#c8452f")}  # Good green, Usable yellow, Reject red


def classes(fig: Any, stats: dict[str, Any], kind: str = GRADE) -> None:
    """Labels per class (grade or quality class) with their shares, and the same per eye."""
    left, right = fig.subplots(1, 2)
    grades = np.arange(len(stats["counts"]))
    bars = left.bar(grades, stats["counts"], color=COLORS[kind])
    left.bar_label(bars, [f"{c} ({p:.1f}%)" for c, p in zip(stats["counts"], stats["percent"])], fontsize=8)
    left.set(title="Labels per grade" if kind == GRADE else "Labels per quality class", ylabel="images")
    _class_axis(left, kind)
    width = 0.8 / len(stats["by_eye"])
    for i, (eye, counts) in enumerate(stats["by_eye"].items()):
        right.bar(grades + (i - (len(stats["by_eye"]) - 1) / 2) * width, counts, width, label=eye)
    right.set(title="Per eye", ylabel="images")
    _class_axis(right, kind)
    right.legend()


def properties(fig: Any, df: pd.DataFrame) -> None:
    """Resolution mix, file size, exposure, sharpness, contrast and visible field: six fixed panels."""
    axes = fig.subplots(2, 3).ravel()
    mix = df["resolution"].value_counts().head(8)[::-1]
    axes[0].barh(mix.index.astype(str), mix.to_numpy())
    axes[0].set(title="Resolution mix (top 8)", xlabel="images")
    _hist(axes[1], df["bytes"] / 1e6, "File size", "MB")
    ok = df[df["reason"].isna()]
    _hist(axes[2], ok["brightness"], "Exposure: mean field brightness", "grey level (0-255)", bins=np.linspace(0, 255, 52))
    axes[2].axvline(TOO_DARK, color="k", ls="--", lw=1)
    axes[2].axvline(OVER_EXPOSED, color="k", ls="--", lw=1)
    sharp = ok["sharpness"].clip(lower=1e-3)
    log_bins = np.geomspace(sharp.min(), sharp.max() * 1.001, 31) if len(sharp) else None
    _hist(axes[3], sharp, "Sharpness", "Laplacian variance (log)", bins=log_bins)
    if len(sharp):
        axes[3].set_xscale("log")
    _hist(axes[4], ok["contrast"], "Contrast", "grey-level std")
    _hist(axes[5], ok["fov_fraction"], "Visible field of view", "fraction of the circle in frame", bins=np.linspace(0, 1, 41))


def _hist(ax: Any, values: pd.Series, title: str, xlabel: str, bins: Any = None) -> None:
    """A histogram, or 'no data' in its place so the chart layout never changes."""
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size:
        ax.hist(v, bins=bins if bins is not None else 30, color="#4a78a8")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel=xlabel, ylabel="images")


def _class_axis(ax: Any, kind: str) -> None:
    """x ticks at the classes: grade numbers, or a quality set's class names."""
    names = class_labels(kind)
    ax.set_xticks(np.arange(len(names)), [str(c) for c in range(len(names))] if kind == GRADE else names)
    ax.set_xlabel("grade" if kind == GRADE else "quality class")


def splits(fig: Any, stats: dict[str, Any], kind: str = GRADE) -> None:
    """Class shares per labelled split, side by side: a stratified split shows the same bars."""
    ax = fig.subplots()
    labelled = {k: v for k, v in stats.items() if k != "test"}
    grades = np.arange(len(COLORS[kind]))
    width = 0.8 / max(1, len(labelled))
    for i, (name, info) in enumerate(labelled.items()):
        bars = ax.bar(grades + (i - (len(labelled) - 1) / 2) * width, info["percent"], width, label=f"{name} ({info['count']})")
        ax.bar_label(bars, [f"{p:.1f}" for p in info["percent"]], fontsize=7)
    ax.set(title="Class mix per split", ylabel="% of split")
    _class_axis(ax, kind)
    if labelled:
        ax.legend()


def shard_balance(fig: Any, shards: list[dict[str, Any]], kind: str = GRADE) -> None:
    """Stacked class shares per shard: stratified shards should all look alike."""
    ax = fig.subplots()
    x = np.arange(len(shards))
    names = class_labels(kind)
    shares = np.array([[pct(c, sum(s["grades"])) for c in s["grades"]] for s in shards]).reshape(-1, len(names))
    bottom = np.zeros(len(shards))
    for g, name in enumerate(names):
        ax.bar(x, shares[:, g], 0.8, bottom=bottom, color=COLORS[kind][g], label=name)
        bottom += shares[:, g]
    step = max(1, len(shards) // 30)  # at most ~30 tick labels, however many shards
    ax.set_xticks(x[::step], [_shard_label(s["name"]) for s in shards[::step]], rotation=90, fontsize=7)
    ax.set(title="Class mix per shard", ylabel="% of shard", ylim=(0, 100))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def _shard_label(name: str) -> str:
    """'train-000012.tar' -> 'train 12': short enough for a tick label."""
    split, _, index = name.removesuffix(".tar").partition("-")
    return f"{split} {int(index)}"


def gradability(fig: Any, g: dict[str, Any], kind: str = GRADE, counted: str = "samples") -> None:
    """The score's histogram with the threshold, and the share below it per class ('no labels' when
    no scored photo has one)."""
    left, right = fig.subplots(1, 2)
    edges = np.asarray(g["histogram"]["edges"])
    left.bar(edges[:-1], g["histogram"]["counts"], width=np.diff(edges), align="edge", color="#4a78a8")
    left.axvline(g["threshold"], color="k", ls="--", lw=1)
    left.set(title="Gradability score", xlabel="score (0 = unreadable, 1 = gradable)", ylabel=counted, xlim=(0, 1))
    shares = [r["below_percent"] for r in g["by_grade"]]
    right.bar(np.arange(len(shares)), shares, color=COLORS[kind])
    if not any(r["measured"] for r in g["by_grade"]):
        right.text(0.5, 0.5, "no labels", ha="center", va="center", transform=right.transAxes)
    per = "grade" if kind == GRADE else "class"
    right.set(title=f"Share below {g['threshold']:g} per {per}", ylabel="percent")
    _class_axis(right, kind)

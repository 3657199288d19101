"""The report writer: sections of HTML, PNG charts and pictures, one self-contained report.html, summary.json.

Everything lands in one folder; images are embedded in the page as data URIs so the report can be
mailed or archived as a single file. Chart sizes are fixed (CHART_INCHES at CHART_DPI), so the pixel
size of every PNG is known before it is drawn.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sightx.evaluation import plots
from sightx.explore.common import ExploreError
from sightx.files.atomic import atomic_write_bytes, atomic_write_text

CHART_DPI = 100
CHART_INCHES = {
    "classes.png": (10.0, 4.0),
    "properties.png": (12.0, 7.0),
    "splits.png": (10.0, 4.0),
    "shard_balance.png": (12.0, 4.0),
    "gradability.png": (10.0, 3.5),
}
OUTPUTS = ("report.html", "summary.json", "gallery.png", "worst.png", "before_after.png", "least_gradable.png", *CHART_INCHES)


@dataclass
class Report:
    """Collects the report's sections and writes its PNGs, report.html and summary.json into one folder."""

    out: Path
    sections: list[str] = field(default_factory=list)
    figures: dict[str, list[int]] = field(default_factory=dict)

    def prepare(self) -> None:
        """Create the folder and drop outputs of an earlier run, which this run may not rewrite."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in OUTPUTS:
                (self.out / name).unlink(missing_ok=True)
        except OSError as e:
            raise ExploreError(f"cannot write to {self.out}: {e.strerror or e}") from None

    def section(self, title: str, *parts: str) -> None:
        self.sections.append(f"<h2>{html.escape(title)}</h2>\n" + "\n".join(parts))

    def chart(self, name: str, draw: Callable[[Any], None]) -> str:
        """A matplotlib chart of the fixed size CHART_INCHES[name] at CHART_DPI, as PNG; returns its <img>."""
        inches = CHART_INCHES[name]
        with plots.figure(figsize=inches, dpi=CHART_DPI, layout="constrained") as fig:
            draw(fig)
            plots.save_png(fig, self.out / name, dpi=CHART_DPI)
        self.figures[name] = [round(inches[0] * CHART_DPI), round(inches[1] * CHART_DPI)]
        return self._img(name)

    def picture(self, name: str, rgb: np.ndarray) -> str:
        """An RGB array (a contact sheet) as PNG; returns its <img>."""
        Image.fromarray(rgb).save(self.out / name)
        self.figures[name] = [rgb.shape[1], rgb.shape[0]]
        return self._img(name)

    def _img(self, name: str) -> str:
        data = base64.b64encode((self.out / name).read_bytes()).decode()
        w, h = self.figures[name]
        return f'<p><img alt="{name}" width="{w}" height="{h}" src="data:image/png;base64,{data}"></p>'

    def finish(self, title: str, summary: dict[str, Any]) -> None:
        """summary.json (with the figures' sizes) and report.html; summary gains a `figures` key."""
        summary["figures"] = self.figures
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
        page = _PAGE.format(title=html.escape(title), body="\n".join(self.sections))
        # File names that are not valid UTF-8 reach here as lone surrogates: shown escaped, never fatal.
        atomic_write_bytes(self.out / "report.html", page.encode("utf-8", "backslashreplace"))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
img {{ max-width: 100%; height: auto; }}
.problem {{ color: #a02020; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def para(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"

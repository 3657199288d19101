"""Contact sheets: many images as one RGB array, each in a fixed-size tile with a caption below.

Pure apart from OpenCV drawing, so reports and docs tooling get the same layout and tests can
predict the output size from the arguments alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

CAPTION_HEIGHT = 20  # pixels under each tile for one line of text
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.42
_PAD = 2  # white margin inside a tile, so adjacent dark photos stay apart
_BACKGROUND = 255
_BLANK = 235  # light grey marks a cell left empty on purpose
_INK = (20, 20, 20)


def grid_rows(n: int, cols: int, rows: int | None = None) -> int:
    """Rows of the grid: as given, else just enough for n images (at least one)."""
    return rows if rows is not None else max(1, math.ceil(n / cols))


def sheet_size(n: int, cols: int, rows: int | None = None, tile: tuple[int, int] = (240, 160)) -> tuple[int, int]:
    """(width, height) of the sheet contact_sheet would make, without making it."""
    return cols * tile[0], grid_rows(n, cols, rows) * (tile[1] + CAPTION_HEIGHT)


def contact_sheet(
    images: Sequence[np.ndarray | None],
    captions: Sequence[str],
    cols: int,
    rows: int | None = None,
    tile: tuple[int, int] = (240, 160),
) -> np.ndarray:
    """Images row-major in a cols x rows grid of tile=(width, height) cells, captions below.

    Images keep their aspect ratio (fitted and centred); None gives a grey cell, still captioned,
    so a grid can show a missing sample in its place.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if cols < 1 or (rows is not None and rows < 1) or min(tile) <= 2 * _PAD:
        raise ValueError(f"invalid layout: cols={cols}, rows={rows}, tile={tile}")
    if len(images) > cols * grid_rows(len(images), cols, rows):
        raise ValueError(f"{len(images)} images do not fit {cols} columns x {rows} rows")
    width, height = sheet_size(len(images), cols, rows, tile)
    out = np.full((height, width, 3), _BACKGROUND, np.uint8)
    for i, (img, caption) in enumerate(zip(images, captions)):
        x = (i % cols) * tile[0]
        y = (i // cols) * (tile[1] + CAPTION_HEIGHT)
        cell = out[y : y + tile[1], x : x + tile[0]]
        if img is None:
            cell[_PAD:-_PAD, _PAD:-_PAD] = _BLANK
        else:
            _paste_fitted(cell, _check(img))
        _caption(out, caption, x, y + tile[1], tile[0])
    return out


def _check(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 HxWx3, got {img.dtype} {img.shape}")
    return img


def _paste_fitted(cell: np.ndarray, img: np.ndarray) -> None:
    """Scale img to fit inside the cell's margins, centred; area averaging when shrinking."""
    box_h, box_w = cell.shape[0] - 2 * _PAD, cell.shape[1] - 2 * _PAD
    f = min(box_w / img.shape[1], box_h / img.shape[0])
    w, h = max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    fitted = cv2.resize(img, (w, h), interpolation=interp)
    y0, x0 = (cell.shape[0] - h) // 2, (cell.shape[1] - w) // 2
    cell[y0 : y0 + h, x0 : x0 + w] = fitted


def _fit_text(text: str, width: int) -> str:
    """Text shortened with '..' until it fits; Hershey fonts have no ellipsis glyph."""
    ascii_text = text.encode("ascii", "replace").decode()
    while ascii_text and cv2.getTextSize(ascii_text, _FONT, _FONT_SCALE, 1)[0][0] > width:
        ascii_text = ascii_text[:-3] + ".." if len(ascii_text) > 3 else ""
    return ascii_text


def _caption(out: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """One line of text, centred under the tile whose bottom edge is y."""
    fitted = _fit_text(text, width - 2 * _PAD)
    (tw, th), _ = cv2.getTextSize(fitted, _FONT, _FONT_SCALE, 1)
    origin = (x + (width - tw) // 2, y + (CAPTION_HEIGHT + th) // 2)
    cv2.putText(out, fitted, origin, _FONT, _FONT_SCALE, _INK, 1, cv2.LINE_AA)

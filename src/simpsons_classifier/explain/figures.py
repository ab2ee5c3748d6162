"""One picture layout shared by every explanation: a grid of titled tiles, each framed, saved as a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..storage import write_figure  # noqa: E402

DPI = 100
TITLE_FONT_SIZE = 7


def tile_grid(
    tiles: list[np.ndarray],
    titles: list[str],
    columns: int,
    suptitle: str,
    path: str | Path,
    tile_inches: float = 1.6,
    **imshow: object,
) -> None:
    """``tiles`` (RGB images or 2-D arrays drawn with ``imshow`` options) row by row, ``columns`` a row."""
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    header_inches = 0.25 * (suptitle.count("\n") + 1) + 0.3
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(tile_inches * columns, (tile_inches + 0.25) * rows + header_inches))
    for ax in axes.flat[len(tiles):]:
        ax.set_axis_off()
    for ax, tile, title in zip(axes.flat, tiles, titles):
        ax.imshow(tile, **imshow)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=TITLE_FONT_SIZE)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    write_figure(fig, path, DPI)

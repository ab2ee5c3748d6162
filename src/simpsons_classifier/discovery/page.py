"""``OUT/index.html``: one self-contained page (every picture a data URI) with a contact sheet per cluster, so
the clusters can be judged, renamed and added to the dataset without opening a folder."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageOps

from ..data.images import load_rgb
from ..report.inline import data_uri
from ..report.templates import template
from ..storage import write_text_atomic
from .results import Discovery, counted

THUMBNAIL_PX = 96
SHEET_COLUMNS = 10
SHEET_MAX_IMAGES = 60
"""Thumbnails a contact sheet shows; the folder holds every image."""
GAP_PX = 4


def contact_sheet(paths: Sequence[str | Path]) -> bytes:
    """The first ``SHEET_MAX_IMAGES`` images as a grid of thumbnails on white, as PNG bytes."""
    shown = list(paths)[:SHEET_MAX_IMAGES]
    columns = min(SHEET_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    cell = THUMBNAIL_PX + GAP_PX
    sheet = Image.new("RGB", (columns * cell + GAP_PX, rows * cell + GAP_PX), "white")
    for i, path in enumerate(shown):
        thumbnail = ImageOps.pad(load_rgb(path), (THUMBNAIL_PX, THUMBNAIL_PX), color="white")
        sheet.paste(thumbnail, (GAP_PX + cell * (i % columns), GAP_PX + cell * (i // columns)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_page(discovery: Discovery) -> Path:
    """``discovery.out.page``, each cluster's contact sheet inlined."""
    html = template("discover.html").render(
        discovery=discovery,
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        sheets=[(cluster, data_uri(contact_sheet(cluster.paths))) for cluster in discovery.clusters],
        shown=SHEET_MAX_IMAGES,
        counted=counted,
    )
    write_text_atomic(discovery.out.page, html)
    return discovery.out.page

"""Pictures inlined into a page as data URIs, so that every page the toolkit writes is one self-contained file."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from ..data.images import load_rgb

JPEG_ABOVE_BYTES = 200_000
JPEG_QUALITY = 88


def data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def file_data_uri(path: Path) -> str:
    """A PNG file as a data URI ("" when it is missing); large ones (heat-map overlays, big matrices, grids of
    scenes) as JPEG, a fifth of the size."""
    if not path.is_file():
        return ""
    if path.stat().st_size <= JPEG_ABOVE_BYTES:
        return data_uri(path.read_bytes())
    buffer = io.BytesIO()
    load_rgb(path).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return data_uri(buffer.getvalue(), "jpeg")

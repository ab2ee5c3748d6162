"""Reading pictures back in tests: the framed tiles of an explanation grid."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

MIN_TILE_PX = 30  # larger than any title text at the pictures' font sizes


def framed_tiles(path) -> list[tuple[slice, slice]]:
    """Bounding boxes of the framed tiles of a picture, row by row: the outermost ink components larger than
    any text."""
    ink = (np.asarray(Image.open(path).convert("RGB")) < 250).any(axis=2)
    labels, _ = ndimage.label(ink)
    boxes = [b for b in ndimage.find_objects(labels)
             if b[0].stop - b[0].start > MIN_TILE_PX and b[1].stop - b[1].start > MIN_TILE_PX]
    tiles = [b for b in boxes if not any(o is not b and _inside(b, o) for o in boxes)]  # not a drawing in a tile
    return sorted(tiles, key=lambda b: (b[0].start // 10, b[1].start))


def _inside(box: tuple[slice, slice], outer: tuple[slice, slice]) -> bool:
    return all(o.start <= b.start and b.stop <= o.stop for b, o in zip(box, outer))

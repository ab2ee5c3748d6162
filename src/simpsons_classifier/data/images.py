"""Reading one image file as RGB, whatever its mode, or saying precisely why it cannot be read."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A decompression bomb is an unreadable file here, not a crash: PIL raises DecompressionBombError past this.
Image.MAX_IMAGE_PIXELS = 8192 * 8192
ImageFile.LOAD_TRUNCATED_IMAGES = False

BACKGROUND_FOR_TRANSPARENCY = (255, 255, 255)


class UnreadableImage(ValueError):
    """A file that is not a decodable image; the message says why."""


class ImageTooLarge(UnreadableImage):
    """An image that would decode to more pixels than the caller allows (``load_rgb(max_pixels=...)``)."""


UNIDENTIFIED = "cannot identify image file: not in a format Pillow reads"
"""The reason for a file object that is no image: Pillow's own message would show the object's repr."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode: transparency goes onto white, 16-bit and float images are rescaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.array(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if high > low:  # (values - low) / (high - low) * 255, in place: one float copy of the image, not three
            values -= low
            values /= high - low
            values *= 255.0
        else:
            values[:] = 0.0
        return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")  # no full-size copy of an RGBA image
        canvas = Image.new("RGB", rgba.size, BACKGROUND_FOR_TRANSPARENCY)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def load_rgb(path: str | Path | BinaryIO, draft_size: tuple[int, int] | None = None,
             max_pixels: int | None = None) -> Image.Image:
    """Decode ``path`` fully as RGB, upright as its EXIF orientation says. ``draft_size`` lets JPEGs decode at a
    reduced scale (much cheaper).

    ``max_pixels`` bounds the memory a decode takes: an image with more pixels to decode is refused from its header
    alone with ``ImageTooLarge``. A baseline JPEG counts at its reduced scale; a progressive one at full size, since
    its decoder holds every coefficient whatever the scale.
    """
    try:
        with Image.open(path) as image:
            full_size = image.size
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:  # PIL itself only warns below twice the limit
                raise Image.DecompressionBombError(f"{image.width}x{image.height} pixels is over the limit of "
                                                   f"{Image.MAX_IMAGE_PIXELS}: a possible decompression bomb")
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", draft_size)
            width, height = full_size if image.info.get("progressive") else image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height} = {width * height} pixels to decode is over the limit of "
                                    f"{max_pixels} pixels")
            image.load()
            # A phone photo is stored sideways with an EXIF orientation that every viewer applies: the model must
            # see it as people do.
            ImageOps.exif_transpose(image, in_place=True)
            return to_rgb(image)
    except UnidentifiedImageError as error:
        raise UnreadableImage(_first_line(error) if isinstance(path, (str, Path)) else UNIDENTIFIED) from None
    except Image.DecompressionBombError as error:
        raise UnreadableImage(_first_line(error) or "not an image") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError, ImageTooLarge):
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(_first_line(error) or type(error).__name__) from None


def check_image(path: str | Path) -> str | None:
    """None when ``path`` decodes, else the reason. Decodes the whole stream (a truncated file is caught) at
    reduced scale where the format allows, so checking a large dataset stays cheap."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty file"
        load_rgb(path, draft_size=(64, 64))
    except UnreadableImage as error:
        return str(error)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    return None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""

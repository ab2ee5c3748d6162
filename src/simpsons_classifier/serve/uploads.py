"""Turning an uploaded file into a model input, or into a 4xx that says what is wrong with it.

415: not an image content type (or not a multipart form at all); 413: over the size limit, or more pixels to decode
than allowed (judged from the header, before decoding); 422: content that does not decode to an image (not an
image, truncated, a decompression bomb). The size limit is checked on the bytes received, whatever the client
claimed; FastAPI's body limit has already refused a request far over it before parsing.

Decoding runs on a pool of ``max_decodes`` threads reading the spooled upload directly: with the pixel cap, that
bounds the memory all decodes together can take, however many uploads arrive at once, and a large decode's memory
goes back to the system as soon as it is done.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

import torch
from fastapi import HTTPException, Request, UploadFile
from PIL import Image

from ..data.images import ImageTooLarge, UnreadableImage, load_rgb
from ..inference.predictor import Predictor
from .memory import release_freed_memory
from .settings import ServeSettings

GENERIC_BINARY = "application/octet-stream"
"""What clients send when they do not know a file's type (curl for a name without extension); decoding decides."""
FORM_FIELD = "image"
IMAGE_CONTENT_TYPE = "image/*"
LARGE_IMAGE_PIXELS = 1_000_000
"""From this size on, the memory of a decode is handed back to the system at once; below, the trim would cost more
than the few megabytes it frees."""
Decoded = TypeVar("Decoded")


def require_multipart(request: Request) -> None:
    """A dependency: a body that is not a multipart form gets 415 rather than a bare "field required"."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, f"send the image as a multipart/form-data upload in the field {FORM_FIELD!r}")


class UploadDecoder:
    """Uploads to preprocessed model inputs (or to images at their own size), at most ``settings.max_decodes`` at a
    time."""

    def __init__(self, predictor: Predictor, settings: ServeSettings) -> None:
        self.predictor = predictor
        self.max_bytes = settings.max_upload_bytes
        self.max_pixels = settings.max_pixels
        self.pool = ThreadPoolExecutor(max_workers=settings.max_decodes, thread_name_prefix="decode")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def read(self, upload: UploadFile) -> torch.Tensor:
        """The classifier's input: decoded at reduced scale where the format allows, then preprocessed."""
        return await self._decode_in_pool(upload, self._model_input)

    async def read_image(self, upload: UploadFile) -> Image.Image:
        """The image at its own size, for a model whose answer is in the image's pixels (the detector)."""
        return await self._decode_in_pool(upload, self._full_image)

    async def _decode_in_pool(self, upload: UploadFile, decode: Callable[[BinaryIO], Decoded]) -> Decoded:
        name = upload.filename or "the upload"
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        if not (content_type.startswith("image/") or content_type == GENERIC_BINARY):
            raise HTTPException(415, f'{name} has content type "{content_type or "none"}"; '
                                     f"expected an image ({IMAGE_CONTENT_TYPE})")
        size = upload.file.seek(0, os.SEEK_END)
        upload.file.seek(0)
        if size > self.max_bytes:
            raise HTTPException(413, f"{name} is over the limit of {self.max_bytes} bytes")
        if not size:
            raise HTTPException(422, f"{name} is empty")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, decode, upload.file)
        except ImageTooLarge as error:
            raise HTTPException(413, f"{name} is too large to decode: {error}") from None
        except UnreadableImage as error:
            raise HTTPException(422, f"{name} is not a readable image: {error}") from None

    def _model_input(self, file: BinaryIO) -> torch.Tensor:
        image = load_rgb(file, self.predictor.draft_size, self.max_pixels)
        large = image.width * image.height >= LARGE_IMAGE_PIXELS
        tensor = self.predictor.transform(image)
        del image
        if large:
            release_freed_memory()
        return tensor

    def _full_image(self, file: BinaryIO) -> Image.Image:
        return load_rgb(file, max_pixels=self.max_pixels)

"""Turning an uploaded file into a model input, or into a 4xx that says what is wrong with it.

415: not an image content type (or not a multipart form at all); 413: over the size limit; 422: content that does
not decode to an image (not an image, truncated, a decompression bomb). The limit is checked on the bytes read,
whatever the client claimed; FastAPI's body limit has already refused a request far over it before parsing.
"""

from __future__ import annotations

import io

import torch
from fastapi import HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..data.images import UnreadableImage
from ..inference.predictor import Predictor

GENERIC_BINARY = "application/octet-stream"
"""What clients send when they do not know a file's type (curl for a name without extension); decoding decides."""
FORM_FIELD = "image"


def require_multipart(request: Request) -> None:
    """A dependency: a body that is not a multipart form gets 415 rather than a bare "field required"."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, f"send the image as a multipart/form-data upload in the field {FORM_FIELD!r}")


async def read_image(upload: UploadFile, predictor: Predictor, max_bytes: int) -> torch.Tensor:
    name = upload.filename or "the upload"
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if not (content_type.startswith("image/") or content_type == GENERIC_BINARY):
        raise HTTPException(415, f"{name} has content type {content_type or 'none'!r}; "
                                 "expected an image (image/*)")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"{name} is over the limit of {max_bytes} bytes")
    if not data:
        raise HTTPException(422, f"{name} is empty")
    try:
        return await run_in_threadpool(predictor.load, io.BytesIO(data))
    except UnreadableImage as error:
        raise HTTPException(422, f"{name} is not a readable image: {error}") from None

"""The FastAPI app: ``POST /predict`` (micro-batched), ``POST /gradcam``, ``GET /healthz``, the web page at ``/``
and the OpenAPI docs at ``/docs``.

A bad upload gets a 4xx with a message (see ``uploads``) and never disturbs the requests around it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which use local names.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import torch
from fastapi import Depends, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..inference.options import DEFAULT_TOP_K
from ..inference.predictor import Prediction, Predictor
from .batcher import MicroBatcher
from .explainer import GradCamExplainer
from .settings import ServeSettings
from .uploads import read_image, require_multipart

PAGE = Path(__file__).parent / "static" / "index.html"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room in the request body for the multipart framing around a file of the largest allowed size."""
BAD_UPLOAD = {status: {"description": why} for status, why in (
    (413, "the file is over the size limit"),
    (415, "not an image content type, or not a multipart upload"),
    (422, "not a readable image: not an image at all, truncated, or a decompression bomb"),
)}


Upload = Annotated[UploadFile, File(description="the image (any format Pillow reads)")]


class LabelProbability(BaseModel):
    label: str
    probability: float


class PredictResponse(BaseModel):
    top_k: list[LabelProbability]
    unknown: bool
    """The image scores below the run's unknown-character threshold: probably none of the known characters."""


def create_app(predictor: Predictor, run_dir: str | Path, settings: ServeSettings = ServeSettings()) -> FastAPI:
    num_classes = len(predictor.classes)
    batcher: MicroBatcher[torch.Tensor, Prediction] = MicroBatcher(
        lambda images: predictor.predict_batch(torch.stack(images), top_k=num_classes),
        settings.max_batch,
        settings.max_wait_ms / 1000,
    )
    explainer = GradCamExplainer(run_dir)
    page = PAGE.read_text()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPIOffline(  # FastAPI whose /docs and /redoc assets are served from the wheel, not a CDN
        title="Simpsons character classifier",
        description="Upload an image; get the most likely characters, or `unknown` for a character never trained on.",
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "classes": num_classes, "unknown_threshold": predictor.rule is not None}

    @app.post("/predict", response_model=PredictResponse, responses=BAD_UPLOAD,
              dependencies=[Depends(require_multipart)])
    async def predict(image: Upload, top_k: Annotated[int, Query(ge=1, le=num_classes)] = DEFAULT_TOP_K):
        """The ``top_k`` most likely characters with their probabilities, and whether the image looks unknown."""
        tensor = await read_image(image, predictor, settings.max_upload_bytes)
        prediction = await batcher.submit(tensor)
        return PredictResponse(
            top_k=[LabelProbability(label=label, probability=p) for label, p in prediction.top_k[:top_k]],
            unknown=prediction.unknown,
        )

    @app.post("/gradcam", response_class=Response, dependencies=[Depends(require_multipart)],
              responses={200: {"content": {"image/png": {}}, "description": "the overlay as PNG"}, **BAD_UPLOAD})
    async def explain(image: Upload, label: Annotated[str | None, Query()] = None) -> Response:
        """Grad-CAM of ``label`` (default: the model's top class) over the image as the model sees it."""
        tensor = await read_image(image, predictor, settings.max_upload_bytes)
        if label is None:
            label = (await batcher.submit(tensor)).top_k[0][0]
        if label not in predictor.classes:
            raise HTTPException(422, f"unknown label {label!r}")
        png = await run_in_threadpool(explainer.png, tensor, predictor.classes.index(label))
        return Response(png, media_type="image/png")

    return app

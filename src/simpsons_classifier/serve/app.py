"""The FastAPI app: ``POST /predict`` (micro-batched), ``POST /gradcam``, ``POST /detect`` (when the run has a
detector), ``GET /healthz``, the web page at ``/`` and the OpenAPI docs at ``/docs``.

A bad upload gets a 4xx with a message (see ``uploads``) and never disturbs the requests around it. What the
service takes on is bounded by ``ServeSettings``: bytes and pixels per upload, decodes and requests at once, and
how long a request may take (see ``guards``); an API key and CORS origins are the operator's choice.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which use local names.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, File, HTTPException, Query, Security, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..detection.predictor import DetectionPredictor
from ..inference.options import DEFAULT_TOP_K
from ..inference.predictor import Prediction, Predictor
from .batcher import MicroBatcher
from .detection import DetectionRunner
from .explainer import ExplanationUnavailable, GradCamExplainer
from .guards import API_KEY_HEADER, ApiKeyGuard, RequestLimits
from .memory import release_freed_memory
from .settings import ServeSettings
from .uploads import FORM_FIELD, IMAGE_CONTENT_TYPE, UploadDecoder, require_multipart

PAGE = Path(__file__).parent / "static" / "index.html"
HEALTH_PATH = "/healthz"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room in the request body for the multipart framing around a file of the largest allowed size."""


class Problem(BaseModel):
    detail: str | list[dict[str, Any]]
    """What is wrong: a sentence, or (422 on a parameter) FastAPI's list of invalid fields."""


def _answers(reasons: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": why} for status, why in reasons.items()}


REFUSALS = _answers({
    400: "a body that does not parse as a multipart form",
    408: "the upload did not arrive within the upload timeout",
    413: "the file is over the size limit, or has more pixels to decode than the pixel limit",
    415: "not an image content type, or not a multipart upload",
    422: "not a readable image (not an image at all, truncated, a decompression bomb), or an invalid parameter",
}) | {503: {"model": Problem, "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                                            "schema": {"type": "integer"}}},
            "description": "the server is busy (too many requests in progress) or could not answer in time"}}
UNAUTHORISED = _answers({401: f"a missing or wrong API key (header {API_KEY_HEADER})"})
NO_EXPLANATION = _answers({409: "Grad-CAM is unavailable: the run's PyTorch checkpoint is missing, unreadable or "
                                "of other classes than the model served (an ONNX-only run)"})
IMAGE_PART = {"requestBody": {"content": {"multipart/form-data": {
    "encoding": {FORM_FIELD: {"contentType": f"{IMAGE_CONTENT_TYPE}, application/octet-stream"}}}}}}
"""OpenAPI's word for the content types the image part may have; FastAPI does not derive it."""

Upload = Annotated[UploadFile, File(description="the image (any format Pillow reads)")]


class LabelProbability(BaseModel):
    label: str
    probability: float


class PredictResponse(BaseModel):
    top_k: list[LabelProbability]
    unknown: bool
    """The image scores below the run's unknown-character threshold: probably none of the known characters."""


class DetectedCharacter(BaseModel):
    label: str
    score: float
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in the uploaded image's pixels (as stored: EXIF orientation is not applied)."""


class DetectResponse(BaseModel):
    detections: list[DetectedCharacter]
    width: int
    height: int
    """The uploaded image's size in pixels, which the boxes are in."""


def create_app(predictor: Predictor, run_dir: str | Path, settings: ServeSettings = ServeSettings(),
               detector: DetectionPredictor | None = None) -> FastAPI:
    """The service of ``predictor``; with a ``detector``, ``POST /detect`` finds every character in an image."""
    check_outputs(predictor, run_dir)
    num_classes = len(predictor.classes)

    def run_batch(images: list[torch.Tensor]) -> list[Prediction]:
        try:
            return predictor.predict_batch(torch.stack(images), top_k=num_classes)
        finally:
            release_freed_memory()

    batcher: MicroBatcher[torch.Tensor, Prediction] = MicroBatcher(run_batch, settings.max_batch,
                                                                    settings.max_wait_ms / 1000)
    decoder = UploadDecoder(predictor, settings)
    detection = None if detector is None else DetectionRunner(detector, decoder)
    explainer = GradCamExplainer(run_dir, predictor.classes)
    page = PAGE.read_text()
    refusals = REFUSALS | (UNAUTHORISED if settings.api_key else {})
    upload_route: dict[str, Any] = {"dependencies": [Depends(require_multipart)], "openapi_extra": IMAGE_PART}
    if settings.api_key:  # documents the key in the schema (an "Authorize" button in /docs); ApiKeyGuard checks it
        upload_route["dependencies"].append(Security(APIKeyHeader(name=API_KEY_HEADER, auto_error=False)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()
        if detection is not None:
            detection.close()
        decoder.close()

    app = FastAPIOffline(  # FastAPI whose /docs and /redoc assets are served from the wheel, not a CDN
        title="Simpsons character classifier",
        description="Upload an image; get the most likely characters, or `unknown` for a character never trained on.",
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    open_paths = frozenset({HEALTH_PATH})
    app.add_middleware(RequestLimits, max_requests=settings.max_requests, upload_timeout_s=settings.upload_timeout_s,
                       request_timeout_s=settings.request_timeout_s, open_paths=open_paths)
    if settings.api_key:
        app.add_middleware(ApiKeyGuard, api_key=settings.api_key, open_paths=open_paths)
    if settings.cors_origins:  # outermost: a browser's preflight carries no key
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=[API_KEY_HEADER, "Authorization"])

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get(HEALTH_PATH)
    def healthz() -> dict:
        return {"status": "ok", "classes": num_classes, "unknown_threshold": predictor.detector is not None,
                "detection": detection is not None}

    @app.post("/predict", response_model=PredictResponse, responses=refusals, **upload_route)
    async def predict(image: Upload, top_k: Annotated[int, Query(ge=1, le=num_classes)] = DEFAULT_TOP_K):
        """The ``top_k`` most likely characters with their probabilities, and whether the image looks unknown."""
        tensor = await decoder.read(image)
        prediction = await batcher.submit(tensor)
        return PredictResponse(
            top_k=[LabelProbability(label=label, probability=p) for label, p in prediction.top_k[:top_k]],
            unknown=prediction.unknown,
        )

    @app.post("/gradcam", response_class=Response, **upload_route,
              responses={200: {"content": {"image/png": {}}, "description": "the overlay as PNG"}, **refusals,
                         **NO_EXPLANATION})
    async def explain(image: Upload, label: Annotated[str | None, Query()] = None) -> Response:
        """Grad-CAM of ``label`` (default: the model's top class) over the image as the model sees it."""
        tensor = await decoder.read(image)
        if label is None:
            label = (await batcher.submit(tensor)).top_k[0][0]
        if label not in predictor.classes:
            raise HTTPException(422, f'unknown label "{label}": not one of the run\'s classes')
        try:
            png = await run_in_threadpool(explainer.png, tensor, predictor.classes.index(label))
        except ExplanationUnavailable as error:
            raise HTTPException(409, str(error)) from None
        return Response(png, media_type="image/png")

    if detection is not None:
        @app.post("/detect", response_model=DetectResponse, responses=refusals, **upload_route)
        async def detect(image: Upload, min_score: Annotated[float | None, Query(
                ge=0, le=1, description="the lowest score a detection may have (default: the detector's)")] = None):
            """Every character found in the image: its label, score and box in the image's pixels."""
            (width, height), detections = await detection.detect(image, min_score)
            return DetectResponse(detections=[DetectedCharacter(label=found.label, score=found.score, box=found.box)
                                              for found in detections], width=width, height=height)

    return app


def check_outputs(predictor: Predictor, run_dir: str | Path) -> None:
    """Refuse a model whose outputs do not match its class names (a damaged or hand-edited export), on which every
    request would fail; the one forward pass also warms the model up."""
    image = predictor.transform(Image.new("RGB", (1, 1)))
    with torch.inference_mode():
        outputs = predictor.model(image[None].to(predictor.device)).shape[-1]
    if outputs != len(predictor.classes):
        raise ValueError(f"{run_dir}: the model has {outputs} outputs but {len(predictor.classes)} class names: a "
                         "damaged or hand-edited export? Run  simpsons export  again")

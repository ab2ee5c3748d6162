"""The character detector behind ``POST /detect``: one image at a time, on a thread of its own.

A detector answers in the image's own pixels, so it takes the upload decoded at full size, not the classifier's
small input. A request holds the one detection slot from its decode to its answer: however many requests wait,
they hold their spooled upload only, and a single full-size image is in memory for detection. Detections run on
one thread, so the model is never called concurrently (as with the classifier's batches).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import UploadFile
from PIL import Image

from ..detection.predictor import Detection, DetectionPredictor
from .memory import release_freed_memory
from .uploads import UploadDecoder


class DetectionRunner:
    def __init__(self, detector: DetectionPredictor, decoder: UploadDecoder) -> None:
        self.detector = detector
        self.decoder = decoder
        self.slot = asyncio.Lock()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")

    def close(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)

    async def detect(self, upload: UploadFile, min_score: float | None) -> tuple[tuple[int, int], list[Detection]]:
        """The upload's size (width, height) and its detections; ``min_score=None`` keeps the detector's own."""
        async with self.slot:
            image = await self.decoder.read_image(upload)
            detections = await asyncio.get_running_loop().run_in_executor(self.thread, self._detect, image,
                                                                          min_score)
            return image.size, detections

    def _detect(self, image: Image.Image, min_score: float | None) -> list[Detection]:
        try:
            if min_score is None:
                return self.detector.detect([image])[0]
            return self.detector.detect([image], min_score=min_score)[0]
        finally:
            release_freed_memory()

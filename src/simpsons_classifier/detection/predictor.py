"""Placeholder of the detector's inference interface, until the detection package lands: what the service codes
against, with no model behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from ..run_dir import RunDir


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in the image's own pixels."""


class DetectionPredictor:
    classes: list[str]

    @classmethod
    def from_run(cls, run_dir: RunDir) -> DetectionPredictor:
        raise NotImplementedError(f"{run_dir.detector.path}: detection is not available in this version")

    def detect(self, images: Sequence[Image.Image], min_score: float = 0.3) -> list[list[Detection]]:
        raise NotImplementedError

"""A run's detector, loaded for inference: boxes, names and scores in each image's own pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import torch
from torchvision.transforms.v2 import functional as F

from ..models import create_model
from ..run_dir import RunDir
from ..training import checkpoint
from .config import DetectConfig
from .model import create_detector

DEFAULT_MIN_SCORE = 0.3
"""Detections scoring below this are not reported (average precision still uses every score)."""


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in the image's own pixels."""

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 1) for v in self.box]}


class DetectionPredictor:
    """``DetectionPredictor.from_run(RUN).detect(images)``: the characters found in each image."""

    def __init__(self, model: torch.nn.Module, classes: list[str], config: DetectConfig) -> None:
        self.model = model.eval()
        self.classes = classes
        self.config = config

    @classmethod
    def from_run(cls, run_dir: str | Path | RunDir) -> DetectionPredictor:
        run = RunDir(run_dir)
        if not run.detector.holds_detector():
            raise FileNotFoundError(f"{run} holds no detector ({run.detector.best} is missing): train one with  "
                                    f"simpsons detect train --data DIR --out {run}")
        payload = checkpoint.read(run.detector.best)
        config = DetectConfig.from_dict(payload["config"], source=str(run.detector.best))
        backbone = create_model(config.backbone, num_classes=1, weights="none")
        model = create_detector(backbone, len(payload["classes"]), config)
        model.load_state_dict(payload["model"])
        return cls(model, payload["classes"], config)

    @torch.inference_mode()
    def raw(self, images: Sequence[torch.Tensor], names_per_box: int = 1) -> list[dict[str, torch.Tensor]]:
        """torchvision's output (boxes, scores, labels down to the model's score floor; each box once per name
        among its ``names_per_box`` most probable) for uint8 C x H x W images of any size."""
        return self.model([F.to_dtype(image, torch.float32, scale=True) for image in images],
                          names_per_box=names_per_box)

    def detect(self, images: Sequence[PIL.Image.Image], min_score: float = DEFAULT_MIN_SCORE) -> list[list[Detection]]:
        outputs = self.raw([F.pil_to_tensor(image.convert("RGB")) for image in images])
        return [
            [Detection(self.classes[int(label)], float(score), tuple(float(v) for v in box))
             for box, score, label in zip(out["boxes"], out["scores"], out["labels"]) if score >= min_score]
            for out in outputs
        ]

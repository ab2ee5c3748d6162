"""Boxes drawn on images: predictions in colour with name and score, true boxes (held-out scenes) in white."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes, make_grid

from ..storage import write_atomic

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324",
           "#800000", "#469990", "#000075")
"""Distinct colours, one per character (cycled)."""
TRUTH_COLOUR = "#ffffff"


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: Sequence[int], scores: Sequence[float],
                    classes: Sequence[str]) -> torch.Tensor:
    """``image`` (uint8 C x H x W) with each box outlined in its character's colour and labelled with name and
    score."""
    if len(boxes) == 0:
        return image
    width = max(2, round(min(image.shape[-2:]) / 160))
    return draw_bounding_boxes(image, boxes, labels=[f"{classes[l]} {s:.2f}" for l, s in zip(labels, scores)],
                               colors=[PALETTE[l % len(PALETTE)] for l in labels], width=width)


def draw_scene_grid(images: Sequence[torch.Tensor], outputs: Sequence[dict], targets: Sequence[dict],
                    classes: Sequence[str], min_score: float, path: str | Path) -> None:
    """Scenes side by side, each with its true boxes (white) under the detections scoring ``min_score`` or more."""
    drawn = []
    for image, output, target in zip(images, outputs, targets):
        kept = output["scores"] >= min_score
        with_truth = draw_bounding_boxes(image, target["boxes"], colors=TRUTH_COLOUR, width=1)
        drawn.append(draw_detections(with_truth, output["boxes"][kept], output["labels"][kept].tolist(),
                                     output["scores"][kept].tolist(), classes))
    save_png(make_grid(drawn, nrow=4, padding=4, pad_value=255), path)


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """A uint8 C x H x W tensor as a PNG, written atomically."""
    picture = F.to_pil_image(image)
    write_atomic(path, lambda handle: picture.save(handle, format="PNG"))

"""Test-time augmentation: average the class probabilities over flipped and zoomed views of each image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ZOOMS = (1.0, 1.15)
"""1.0 is the image as evaluated; 1.15 crops the centre 1/1.15 and resizes it back (a closer look)."""


def zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Crop the centre ``1/factor`` of a B×C×H×W batch and resize it back to H×W."""
    if factor == 1.0:
        return images
    height, width = images.shape[-2:]
    crop_h, crop_w = round(height / factor), round(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = images[..., top : top + crop_h, left : left + crop_w]
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def tta_views(images: torch.Tensor) -> list[torch.Tensor]:
    return [view for factor in ZOOMS for z in (zoom(images, factor),) for view in (z, z.flip(-1))]


@torch.no_grad()
def tta_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Log of the mean probability over the views: a drop-in replacement for ``model(images)``."""
    probabilities = torch.stack([model(view).float().softmax(dim=1) for view in tta_views(images)]).mean(dim=0)
    return probabilities.clamp_min(1e-12).log()


class TTAModel(nn.Module):
    """Wraps a classifier so that ``forward`` returns :func:`tta_logits`; evaluation code needs no other change."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, images)

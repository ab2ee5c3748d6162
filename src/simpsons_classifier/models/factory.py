"""One entry point for models: ``create_model(backbone, num_classes, weights)``, any timm architecture."""

from __future__ import annotations

import timm
from torch import nn

from .weights import WeightsError, build_with_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_model(backbone: str, num_classes: int, weights: str = "none") -> nn.Module:
    """A ``backbone`` classifier with a fresh ``num_classes`` head; ``weights``: imagenet, none or a file."""
    if not timm.is_model(backbone):
        raise WeightsError(f"unknown backbone {backbone!r}: use resnet101, efficientnet_lite0 or a timm model name")
    return build_with_weights(backbone, num_classes, weights)


def data_config(model: nn.Module) -> dict[str, tuple[float, ...]]:
    """The input normalisation the backbone was pre-trained with (ImageNet's unless timm says otherwise)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return {"mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD))}

"""Grad-CAM through pytorch-grad-cam: which part of the image made the model say a class.

The target layer is the last spatial feature map before pooling, as the model family registry names it (ResNet
``layer4[-1]``; EfficientNet ``conv_head``, the 1×1 conv that feeds the pool). Checkpoints of a partly frozen
backbone have parameters without gradients, which would leave the target layer's output without a
gradient, so gradients are switched on for the explanation and the model's state restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..models import family_of

# Share of the photo in an overlay; the rest is the heat map.
IMAGE_WEIGHT = 0.55


def target_layer(model: nn.Module) -> nn.Module:
    """The layer whose activations and gradients Grad-CAM weighs."""
    return family_of(model).gradcam_target(model)


@contextlib.contextmanager
def gradients_enabled(model: nn.Module) -> Iterator[None]:
    """Every parameter requires grad and the model is in eval mode inside; both restored on exit."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    modes = {module: module.training for module in model.modules()}
    model.requires_grad_(True)
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        for module, training in modes.items():
            module.train(training)


def gradcam(model: nn.Module, images: torch.Tensor, class_indices: list[int]) -> np.ndarray:
    """Grad-CAM of ``class_indices[i]`` for normalised ``images[i]``: [B, H, W] floats in [0, 1], image-sized."""
    if len(class_indices) != len(images):
        raise ValueError(f"{len(images)} images but {len(class_indices)} class indices")
    targets = [ClassifierOutputTarget(int(c)) for c in class_indices]
    with gradients_enabled(model), GradCAM(model=model, target_layers=[target_layer(model)]) as cam:
        return cam(input_tensor=images, targets=targets).astype(np.float32)


def overlay(image_rgb: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The heat map (resized to the image if needed) blended over an HxWx3 uint8 image."""
    height, width = image_rgb.shape[:2]
    if cam.shape != (height, width):
        cam = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
    return show_cam_on_image(image_rgb.astype(np.float32) / 255, np.clip(cam, 0, 1), use_rgb=True,
                             image_weight=IMAGE_WEIGHT)

"""The training augmentation recipe: the weak/strong choice and every range and probability of the pipelines.

Each training sample takes the weak pipeline or, with probability ``cfg.strong_aug_prob``, the strong one
(:class:`WeakOrStrong`, :func:`draw_strong`). The engines (:mod:`.torchvision_engine`, the reference; :mod:`.fused`,
OpenCV) and the GPU path (:mod:`.gpu`) all implement this one recipe from these constants, so changing one here
changes it everywhere. Names follow torchvision.transforms.v2, whose meaning of each parameter the engines keep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch

Image = TypeVar("Image")

# --- both pipelines ---
CROP_RATIO = (3 / 4, 4 / 3)
"""Aspect-ratio range (width / height) of RandomResizedCrop's box, log-uniform (torchvision's default)."""

# --- weak pipeline, in the order applied ---
WEAK_CROP_SCALE = (0.7, 1.0)
"""Area of RandomResizedCrop's box as a fraction of the image, uniform in this range."""
WEAK_FLIP_PROB = 0.5
"""Probability of a horizontal flip."""
WEAK_COLOR_JITTER = (0.1, 0.1, 0.1, 0.02)
"""ColorJitter (brightness, contrast, saturation, hue): factors uniform in [1 - x, 1 + x], a hue shift uniform in
[-h, h] of a full turn, the four applied in a random order."""

# --- strong pipeline, in the order applied (after background mixing, see BACKGROUND_*) ---
STRONG_CROP_SCALE = (0.35, 1.0)
"""Area of RandomResizedCrop's box as a fraction of the image, uniform in this range."""
ROTATION_DEGREES = 15.0
"""Every strong sample is rotated by an angle uniform in [-ROTATION_DEGREES, ROTATION_DEGREES]."""
PERSPECTIVE_DISTORTION = 0.2
"""RandomPerspective's distortion scale: each corner moves inwards by up to this fraction of half the side."""
PERSPECTIVE_PROB = 0.3
"""Probability of the perspective distortion."""
ELASTIC_ALPHA = 30.0
ELASTIC_SIGMA = 5.0
"""ElasticTransform's strength and smoothness: a displacement of uniform noise in [-1, 1] per pixel, smoothed by
a Gaussian of sigma pixels, scaled to alpha / 2 pixels."""
ELASTIC_PROB = 0.25
"""ElasticTransform is the slowest step, so it is applied to a quarter of the strong samples only."""
STRONG_COLOR_JITTER = (0.3, 0.3, 0.3, 0.05)
"""ColorJitter (brightness, contrast, saturation, hue), as WEAK_COLOR_JITTER."""
GRAYSCALE_PROB = 0.1
"""Probability of turning the image grey (every channel := its luma)."""
INVERT_PROB = 0.05
"""Probability of inverting every channel."""
SOLARIZE_THRESHOLD = 0.5
"""Solarize inverts the levels at or above this one, on float images in [0, 1]."""
SOLARIZE_PROB = 0.05
"""Probability of solarizing."""
BLUR_KERNEL_SIZE = 5
"""Side, in pixels, of the Gaussian blur's kernel."""
BLUR_SIGMA = (0.1, 2.0)
"""Range of the blur's sigma, in pixels, uniform (torchvision's default)."""
BLUR_PROB = 0.2
"""Probability of the blur."""
ERASING_PROB = 0.25
"""Probability of RandomErasing. It runs after normalisation, so erased areas are 0: the mean colour."""
ERASING_SCALE = (0.02, 0.33)
ERASING_RATIO = (0.3, 3.3)
"""Area (fraction of the image, uniform) and aspect ratio (height / width, log-uniform) of the erased box
(torchvision's defaults)."""

# --- background mixing (strong pipeline only, probability cfg.background_mix_prob) ---
BACKGROUND_ZOOM = (0.5, 1.0)
"""Side of the background crop as a fraction of the largest crop of the image's aspect ratio that fits."""
BACKGROUND_FLIP_PROB = 0.5
"""Probability of mirroring the background left-right."""
BACKGROUND_JITTER = (0.4, 0.4, 0.4, 0.1)
"""ColorJitter (brightness, contrast, saturation, hue) applied to every background so no background is seen twice
with the same colours."""


def draw_strong(p_strong: float) -> bool:
    """Whether a sample takes the strong pipeline: one ``torch.rand`` per sample, whatever ``p_strong``, so seeding
    torch (or a DataLoader's per-worker seeding) reproduces the choice, in every engine alike."""
    return bool(torch.rand(()) < p_strong)


class WeakOrStrong(Generic[Image]):
    """Send each sample through ``strong`` with probability ``p_strong`` (:func:`draw_strong`), else ``weak``."""

    def __init__(
        self, weak: Callable[[Image], torch.Tensor], strong: Callable[[Image], torch.Tensor], p_strong: float
    ) -> None:
        if not 0.0 <= p_strong <= 1.0:
            raise ValueError(f"p_strong={p_strong} must be in [0, 1]")
        self.weak = weak
        self.strong = strong
        self.p_strong = p_strong

    def __call__(self, image: Image) -> torch.Tensor:
        pipeline = self.strong if draw_strong(self.p_strong) else self.weak
        return pipeline(image)


class WeakAndStrong(Generic[Image]):
    """Both views of a sample, FixMatch's pair for an unlabelled image: ``(weak(image), strong(image))``."""

    def __init__(self, weak: Callable[[Image], torch.Tensor], strong: Callable[[Image], torch.Tensor]) -> None:
        self.weak = weak
        self.strong = strong

    def __call__(self, image: Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weak(image), self.strong(image)

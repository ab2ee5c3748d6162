"""Colour augmentation as affine colour matrices, one hue shift and a lookup table.

Brightness, contrast and saturation (three of torchvision's ColorJitter operations), grayscale and invert are
affine maps of a pixel's RGB vector, so each run of them composes into one 3 x 4 matrix and the image is
touched once per run (``cv2.transform`` on the CPU, a batched matmul on the device). Hue is the one jitter that
is not affine: a shift of H in HSV, exactly as torchvision does it, between the matrix of the operations drawn
before it and the matrix of those drawn after it. Solarize is a 256-entry lookup table. One difference from
torchvision applying the operations one by one: within a matrix, values are clipped once, at its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from simpsons_classifier.augment.recipe import SOLARIZE_THRESHOLD

LUMA = np.array([0.2989, 0.587, 0.114])
"""Grey level of an RGB pixel (torchvision's rgb_to_grayscale)."""
GREY = np.outer(np.ones(3), LUMA)
"""Every channel := the pixel's grey level."""
IDENTITY, ORIGIN = np.eye(3), np.zeros(3)
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
"""Columns of :attr:`ColourDraw.factors`, in ColorJitter's order."""
SOLARIZE_LEVEL = math.ceil(SOLARIZE_THRESHOLD * 255)
"""Solarize on 0..255 levels: levels at or above this one are inverted."""
SOLARIZE_LUT = np.where(np.arange(256) >= SOLARIZE_LEVEL, 255 - np.arange(256), np.arange(256)).astype(np.uint8)


@dataclass(frozen=True)
class ColourDraw:
    """The colour parameters of n samples."""

    factors: np.ndarray
    """n x 4: brightness, contrast and saturation factors, and the hue shift as a fraction of a full turn."""
    order: np.ndarray
    """n x 4: the order in which the four jitter operations apply (a permutation of 0..3 per sample)."""
    grayscale: np.ndarray
    invert: np.ndarray
    solarize: np.ndarray
    """n booleans each."""


@dataclass(frozen=True)
class Colour:
    """ColorJitter(*jitter) in a random order, then grayscale, invert and solarize, each with its probability:
    torchvision's ranges (factors uniform in [max(0, 1 - x), 1 + x], hue shift uniform in [-h, h])."""

    jitter: tuple[float, float, float, float]
    grayscale_prob: float = 0.0
    invert_prob: float = 0.0
    solarize_prob: float = 0.0

    def sample(self, n: int) -> ColourDraw:
        draws = torch.rand(n, 11).double().numpy()
        brightness, contrast, saturation, hue = self.jitter
        low = np.array([max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation), -hue])
        high = np.array([1 + brightness, 1 + contrast, 1 + saturation, hue])
        return ColourDraw(
            factors=low + (high - low) * draws[:, :4],
            order=draws[:, 4:8].argsort(axis=1),
            grayscale=draws[:, 8] < self.grayscale_prob,
            invert=draws[:, 9] < self.invert_prob,
            solarize=draws[:, 10] < self.solarize_prob,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Draw and apply to one RGB uint8 H x W x 3 image."""
        draw = self.sample(1)
        before, after = jitter_steps(draw.order[0])
        if before:
            image = cv2.transform(image, affine_matrix(draw, 0, before, _contrast_mean(image, before), finish=False))
        if draw.factors[0, HUE] != 0:
            image = shift_hue(image, draw.factors[0, HUE])
        if after or draw.grayscale[0] or draw.invert[0]:
            image = cv2.transform(image, affine_matrix(draw, 0, after, _contrast_mean(image, after), finish=True))
        return cv2.LUT(image, SOLARIZE_LUT) if draw.solarize[0] else image


def jitter_steps(order: np.ndarray) -> tuple[list[int], list[int]]:
    """The affine jitter operations of one sample, in order, before and after its hue shift."""
    hue_at = list(order).index(HUE)
    return [int(op) for op in order[:hue_at]], [int(op) for op in order[hue_at + 1 :]]


def affine_matrix(draw: ColourDraw, i: int, steps: list[int], mean: np.ndarray, finish: bool) -> np.ndarray:
    """3 x 4 float32 affine map of RGB levels (0..255) doing sample ``i``'s ``steps`` (from :func:`jitter_steps`)
    in order, then, with ``finish``, its grayscale and invert. ``mean``: the image's channel means, which
    contrast needs (it blends with the mean grey)."""
    linear, offset = IDENTITY, ORIGIN
    for op in steps:
        factor = float(draw.factors[i, op])
        if op == SATURATION:
            step = factor * IDENTITY + (1 - factor) * GREY
            linear, offset = step @ linear, step @ offset
        elif op == CONTRAST:
            mean_grey = LUMA @ (linear @ mean + offset)  # of the image so far
            linear, offset = factor * linear, factor * offset + (1 - factor) * mean_grey
        else:
            linear, offset = factor * linear, factor * offset
    if finish and draw.grayscale[i]:
        linear, offset = GREY @ linear, GREY @ offset
    if finish and draw.invert[i]:
        linear, offset = -linear, 255.0 - offset
    return np.column_stack([linear, offset]).astype(np.float32)


def shift_hue(image: np.ndarray, turns: float) -> np.ndarray:
    """Turn the hue of an RGB uint8 image by ``turns`` of the colour wheel, in HSV (H in 256 steps per turn)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(round(turns * 256) % 256)  # uint8 arithmetic wraps around the wheel
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def _contrast_mean(image: np.ndarray, steps: list[int]) -> np.ndarray:
    """The image's channel means when ``steps`` adjust contrast (which needs them), else zeros: unused."""
    return np.array(cv2.mean(image)[:3]) if CONTRAST in steps else ORIGIN

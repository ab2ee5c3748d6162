"""Background mixing for the fused engine: the reference's BackgroundMixing on uint8 arrays, with OpenCV.

Same mask (:func:`~simpsons_classifier.augment.background.foreground_mask`: exact cut-out on a flat backdrop,
soft centred ellipse otherwise), same background crop (:func:`sample_background_crop`), flip probability and
colour-jitter ranges as the reference; only the image operations differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image
import torch

from simpsons_classifier.augment.background import (
    BACKGROUND_FLIP_PROB,
    BACKGROUND_JITTER,
    foreground_mask,
    sample_background_crop,
)
from simpsons_classifier.augment.colour import Colour


class ArrayBackgroundMixing:
    """With probability ``p``, put what is behind the character of an RGB uint8 H x W x 3 image onto a random
    background: a crop of one of ``backgrounds`` with the image's aspect ratio, resized to it, maybe flipped,
    colour-jittered; ``out = mask * image + (1 - mask) * background``. Randomness from torch's RNG."""

    def __init__(self, backgrounds: Sequence[PIL.Image.Image], p: float) -> None:
        if not backgrounds:
            raise ValueError("background mixing needs at least one background image")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"background mixing: p={p} must be in [0, 1]")
        self.p = p
        self._backgrounds = [np.asarray(background.convert("RGB")) for background in backgrounds]
        self._jitter = Colour(BACKGROUND_JITTER)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if torch.rand(()) >= self.p:
            return image
        height, width = image.shape[:2]
        background = self._backgrounds[int(torch.randint(len(self._backgrounds), ()))]
        top, left, crop_height, crop_width = sample_background_crop(*background.shape[:2], height, width)
        patch = background[top : top + crop_height, left : left + crop_width]
        patch = cv2.resize(self._jitter(patch), (width, height))  # jittered before resizing: fewer pixels
        if torch.rand(()) < BACKGROUND_FLIP_PROB:
            patch = cv2.flip(patch, 1)
        return blend(image, patch, foreground_mask(image))


def blend(image: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * image + (1 - mask) * background`` for uint8 images and a uint8 mask (255 = image); integer
    arithmetic, within one level of the exact blend, about three times faster than ``cv2.blendLinear``."""
    mask = cv2.merge([mask, mask, mask])
    kept = cv2.multiply(image, mask, scale=1 / 255)
    return cv2.add(kept, cv2.multiply(background, cv2.bitwise_not(mask), scale=1 / 255))

"""Background mixing for the fused engine: the reference's BackgroundMixing on uint8 arrays, with OpenCV.

Same mask (:func:`~simpsons_classifier.augment.background.foreground_mask`: exact cut-out on a flat backdrop,
soft centred ellipse otherwise), same draws (:class:`~.background.BackgroundSampler`: background, crop, flip)
and colour-jitter ranges as the reference; only the image operations differ, and the engine does them at the
output's resolution, folded into its warp (:meth:`ArrayBackgroundMixing.composite`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import PIL.Image

from simpsons_classifier.augment.background import BackgroundSampler, foreground_mask
from simpsons_classifier.augment.colour import Colour
from simpsons_classifier.augment.geometry import (
    Warp,
    cut_out,
    flip_homography,
    output_to_source,
    resample,
    resize_homography,
    translation,
    warp_image,
)
from simpsons_classifier.augment.recipe import BACKGROUND_JITTER


@dataclass(frozen=True)
class Backdrop:
    """The background drawn for one image: ``pixels[box]`` (top, left, height, width) stands behind the whole
    image, mirrored left-right when ``flip``."""

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    flip: bool


class ArrayBackgroundMixing:
    """With probability ``p``, put what is behind the character of an RGB uint8 H x W x 3 image onto a random
    background: a crop of one of ``backgrounds`` with the image's aspect ratio, resized to it, maybe flipped,
    colour-jittered; ``out = mask * image + (1 - mask) * background``. Randomness from torch's RNG.

    Calling it mixes at the image's resolution. :meth:`composite` mixes and warps in one go, at the output's.
    """

    def __init__(self, backgrounds: Sequence[PIL.Image.Image], p: float) -> None:
        self._backgrounds = [np.asarray(background.convert("RGB")) for background in backgrounds]
        self._sampler = BackgroundSampler([background.shape[:2] for background in self._backgrounds], p)
        self._jitter = Colour(BACKGROUND_JITTER)

    def sample(self, height: int, width: int) -> Backdrop | None:
        """The background for a height x width image, or None when mixing does not fire."""
        draw = self._sampler(height, width)
        return None if draw is None else Backdrop(self._backgrounds[draw.index], draw.box, draw.flip)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        backdrop = self.sample(height, width)
        if backdrop is None:
            return image
        top, left, box_height, box_width = backdrop.box
        patch = self._jitter(backdrop.pixels[top : top + box_height, left : left + box_width])
        patch = cv2.resize(patch, (width, height))  # jittered before resizing: fewer pixels
        if backdrop.flip:
            patch = cv2.flip(patch, 1)
        return blend(image, patch, foreground_mask(image))

    def composite(self, image: np.ndarray, backdrop: Backdrop, warp: Warp, size: int) -> np.ndarray:
        """The mixed image warped to size x size: the image warped with its mask (one resampling), the part of
        the background behind the warp's crop warped by the same map, blended at the output's resolution.

        Equal to mixing and then warping, up to where the two interpolate the mask's edge, and cheaper: the
        background is never resized to the image, jittered and blended are size x size pixels, not H x W.
        """
        character = warp_image(image, warp, size, alpha=foreground_mask(image))
        behind = self._behind(backdrop, image.shape[:2], warp, size)
        return blend(cv2.cvtColor(character, cv2.COLOR_RGBA2RGB), behind, cv2.extractChannel(character, 3))

    def _behind(self, backdrop: Backdrop, image_shape: tuple[int, int], warp: Warp, size: int) -> np.ndarray:
        """The jittered background under the warp's crop, warped to size x size like the image; black where the
        image's warp is black (outside the crop)."""
        height, width = image_shape
        top, left, box_height, box_width = backdrop.box
        mirror = flip_homography(box_width) if backdrop.flip else np.eye(3)
        resize = resize_homography(box_width / width, box_height / height)
        image_to_background = translation(left, top) @ mirror @ resize
        covered = _covering_box(image_to_background, warp.box, backdrop.box)
        cut, background_to_cut = cut_out(backdrop.pixels, covered, size)
        cut = cv2.cvtColor(self._jitter(cut), cv2.COLOR_RGB2RGBA)  # jittered before warping: usually fewer pixels
        to_cut = background_to_cut @ image_to_background @ output_to_source(warp, size)
        return cv2.cvtColor(resample(cut, to_cut, warp.displacement, size), cv2.COLOR_RGBA2RGB)


def _covering_box(
    image_to_background: np.ndarray, box: tuple[int, int, int, int], within: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """The background pixels (top, left, height, width) covered by the image pixels of ``box``, kept ``within``
    the backdrop's box; ``image_to_background`` is affine."""
    top, left, height, width = box
    corners = np.array([[left, top], [left + width, top], [left, top + height], [left + width, top + height]]) - 0.5
    mapped = corners @ image_to_background[:2, :2].T + image_to_background[:2, 2]
    first = np.maximum(np.floor(mapped.min(axis=0) + 0.5).astype(int), [within[1], within[0]])
    end = [within[1] + within[3] - 1, within[0] + within[2] - 1]
    last = np.minimum(np.ceil(mapped.max(axis=0) - 0.5).astype(int), end)
    return int(first[1]), int(first[0]), int(last[1] - first[1] + 1), int(last[0] - first[0] + 1)


def blend(image: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * image + (1 - mask) * background`` for uint8 images and a uint8 mask (255 = image); integer
    arithmetic, within one level of the exact blend, about three times faster than ``cv2.blendLinear``."""
    mask = cv2.merge([mask, mask, mask])
    kept = cv2.multiply(image, mask, scale=1 / 255)
    return cv2.add(kept, cv2.multiply(background, cv2.bitwise_not(mask), scale=1 / 255))

"""The fused augmentation engine: the recipe's weak and strong pipelines on uint8 arrays with OpenCV.

Per sample: all geometry as one resampling (:mod:`.geometry`), with background mixing (strong only) folded into
it (:mod:`.mixing`), colour as affine matrices, a hue shift and a lookup table (:mod:`.colour`), Gaussian blur
and random erasing. Every range and probability is the recipe's (:mod:`.recipe`), as in the reference;
randomness comes from torch's RNG only, so ``torch.manual_seed`` and DataLoader worker seeding reproduce it.

Samples leave the workers as uint8, and :class:`Normalise` turns the batch into floats on the device, as timm's
prefetcher and FFCV do: a quarter of the bytes between processes and to the GPU, and no per-sample float pass.
Erasing fills with the mean colour, which is what the reference's erasing to 0 after normalising amounts to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import PIL.Image
import torch
from torch.utils.data import default_collate

from simpsons_classifier.augment import recipe
from simpsons_classifier.augment.background import background_pool
from simpsons_classifier.augment.colour import Colour
from simpsons_classifier.augment.geometry import Geometry, sample_box, warp_image
from simpsons_classifier.augment.mixing import ArrayBackgroundMixing
from simpsons_classifier.config import Config

cv2.setNumThreads(1)  # one sample per core: DataLoader workers are the parallelism, OpenCV threads would fight them


@dataclass(frozen=True)
class GaussianBlur:
    """With probability ``p``, blur with a ``kernel_size`` Gaussian whose sigma is uniform in ``sigma``."""

    p: float
    kernel_size: int = recipe.BLUR_KERNEL_SIZE
    sigma: tuple[float, float] = recipe.BLUR_SIGMA

    def sample(self, n: int) -> np.ndarray:
        """n sigmas; 0 where the blur does not fire."""
        fires, draw = torch.rand(2, n).double().numpy()
        return np.where(fires < self.p, self.sigma[0] + (self.sigma[1] - self.sigma[0]) * draw, 0.0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        sigma = float(self.sample(1)[0])
        if sigma == 0:
            return image
        return cv2.GaussianBlur(image, (self.kernel_size, self.kernel_size), sigma, borderType=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class RandomErasing:
    """With probability ``p``, paint a random box of an RGB uint8 image with ``fill``: area ``scale`` of the image,
    aspect ratio (height / width) log-uniform in ``ratio``, as torchvision's."""

    p: float
    fill: tuple[int, int, int] = (0, 0, 0)
    scale: tuple[float, float] = recipe.ERASING_SCALE
    ratio: tuple[float, float] = recipe.ERASING_RATIO

    def sample(self, size: int) -> tuple[int, int, int, int] | None:
        """The erased box (top, left, height, width) of a size x size image, or None."""
        if torch.rand(()) >= self.p:
            return None
        return sample_box(size, size, self.scale, (1 / self.ratio[1], 1 / self.ratio[0]))  # box ratios are w / h

    def __call__(self, image: np.ndarray) -> np.ndarray:
        box = self.sample(image.shape[0])
        if box is not None:
            top, left, height, width = box
            image[top : top + height, left : left + width] = self.fill
        return image


class Normalise:
    """Per channel ``(x - mean) / std`` of images, C x H x W or B x C x H x W, in any memory layout (channels-last
    batches stay channels-last) and on any device, to float32: uint8 levels (x = level / 255) by calling it, as
    the fused engine hands them over; float images in [0, 1] with :meth:`floats`, as the GPU path makes them."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self._per_level = (1 / (255 * torch.tensor(std, dtype=torch.float32))).view(3, 1, 1)
        self._per_unit = self._per_level * 255
        self._shift = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)).view(3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self._move_to(images.device)
        return images.float().mul_(self._per_level).add_(self._shift)

    def floats(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1], normalised in place."""
        self._move_to(images.device)
        return images.mul_(self._per_unit).add_(self._shift)

    def _move_to(self, device: torch.device) -> None:
        if self._shift.device != device:  # moved once, not per batch
            self._per_level, self._per_unit, self._shift = (
                constant.to(device) for constant in (self._per_level, self._per_unit, self._shift)
            )


def mean_colour(mean: Sequence[float]) -> tuple[int, int, int]:
    """The normalisation's mean as uint8 levels: the colour that normalises to 0."""
    red, green, blue = (round(255 * channel) for channel in mean)
    return red, green, blue


def collate(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader collate for (image, label) pairs that stacks the engine's channels-last images as they are
    laid out: B x 3 x H x W, channels-last. ``default_collate`` would transpose every image into the contiguous
    layout on the way (about 0.1 ms an image on one core); other images go to it unchanged."""
    images, labels = zip(*batch)
    if all(isinstance(image, torch.Tensor) and image.dim() == 3 and image.stride(0) == 1 for image in images):
        return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2), torch.tensor(labels)
    return default_collate(batch)


@dataclass(frozen=True)
class Branch:
    """One pipeline, weak or strong: geometry (one resampling, with background mixing if any) -> colour -> blur
    -> erasing. Takes an RGB PIL image or uint8 H x W x 3 array, returns a uint8 3 x size x size tensor laid out
    channels-last (a view of the H x W x 3 result: no copy)."""

    geometry: Geometry
    colour: Colour
    blur: GaussianBlur = GaussianBlur(0.0)
    erasing: RandomErasing = RandomErasing(0.0)
    mixing: ArrayBackgroundMixing | None = None

    def __call__(self, image: PIL.Image.Image | np.ndarray) -> torch.Tensor:
        image = as_rgb_array(image)
        backdrop = self.mixing.sample(*image.shape[:2]) if self.mixing is not None else None
        warp = self.geometry.sample(*image.shape[:2])
        if backdrop is None:
            image = warp_image(image, warp, self.geometry.size)
        else:
            image = self.mixing.composite(image, backdrop, warp, self.geometry.size)
        image = self.erasing(self.blur(self.colour(image)))
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class FusedTransform(recipe.WeakOrStrong[PIL.Image.Image | np.ndarray]):
    """The per-sample train transform: the strong :class:`Branch` with probability ``p_strong``, else the weak one.
    Accepts an RGB PIL image or an RGB uint8 H x W x 3 array."""


def as_rgb_array(image: PIL.Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H x W x 3 uint8), got {array.dtype} of shape {array.shape}")
    return array


def weak_branch(cfg: Config) -> Branch:
    """The recipe's weak pipeline: gentle crop, horizontal flip, mild colour jitter."""
    geometry = Geometry(cfg.image_size, recipe.WEAK_CROP_SCALE, flip_prob=recipe.WEAK_FLIP_PROB)
    return Branch(geometry, Colour(recipe.WEAK_COLOR_JITTER))


def strong_branch(cfg: Config, backgrounds: Sequence[PIL.Image.Image], erase_fill: tuple[int, int, int]) -> Branch:
    """The recipe's strong pipeline: background mixing (when ``cfg.background_mix_prob`` > 0), heavy
    geometry and colour, blur and erasing (with ``erase_fill``)."""
    geometry = Geometry(
        cfg.image_size,
        recipe.STRONG_CROP_SCALE,
        degrees=recipe.ROTATION_DEGREES,
        distortion=recipe.PERSPECTIVE_DISTORTION,
        perspective_prob=recipe.PERSPECTIVE_PROB,
        elastic_alpha=recipe.ELASTIC_ALPHA,
        elastic_sigma=recipe.ELASTIC_SIGMA,
        elastic_prob=recipe.ELASTIC_PROB,
    )
    colour = Colour(recipe.STRONG_COLOR_JITTER, recipe.GRAYSCALE_PROB, recipe.INVERT_PROB, recipe.SOLARIZE_PROB)
    mixing = ArrayBackgroundMixing(backgrounds, cfg.background_mix_prob) if cfg.background_mix_prob > 0 else None
    erasing = RandomErasing(recipe.ERASING_PROB, erase_fill)
    return Branch(geometry, colour, GaussianBlur(recipe.BLUR_PROB), erasing, mixing)


def build_train_transform(cfg: Config, mean: Sequence[float], std: Sequence[float]) -> FusedTransform:
    """The fused engine's per-sample train transform (a builder of :mod:`.engines`): RGB image (any size) ->
    uint8 3 x image_size x image_size, channels-last, for :func:`collate` and :class:`Normalise` (``std`` is
    theirs; ``mean`` colours the erased boxes); backgrounds for mixing from :func:`~.background.background_pool`."""
    strong = strong_branch(cfg, background_pool(cfg), mean_colour(mean))
    return FusedTransform(weak_branch(cfg), strong, cfg.strong_aug_prob)

"""The reference per-sample augmentation: the recipe (:mod:`.recipe`) built with torchvision.transforms.v2.

Each training sample gets the weak pipeline or, with probability ``cfg.strong_aug_prob``, the strong one
(:class:`~.recipe.WeakOrStrong`). Written step by step with torchvision's own transforms, it is the reference the
other engines are checked and benchmarked against (:mod:`.engines` picks one).
"""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from torchvision.transforms import v2

from simpsons_classifier.augment import recipe
from simpsons_classifier.augment.background import BackgroundMixing, background_pool
from simpsons_classifier.config import Config


def weak_pipeline(cfg: Config, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Gentle crop, horizontal flip and mild colour jitter: PIL image -> normalised float tensor."""
    return v2.Compose(
        [
            v2.ToImage(),
            random_resized_crop(cfg.image_size, recipe.WEAK_CROP_SCALE),
            v2.RandomHorizontalFlip(recipe.WEAK_FLIP_PROB),
            v2.ColorJitter(*recipe.WEAK_COLOR_JITTER),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.ToPureTensor(),
        ]
    )


def strong_pipeline(
    cfg: Config, backgrounds: Sequence[PIL.Image.Image], mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    """Background mixing, heavy geometry and colour, blur and erasing: PIL image -> normalised float tensor.

    Background mixing is left out when ``cfg.background_mix_prob`` is 0.
    """
    mixing = [BackgroundMixing(backgrounds, cfg.background_mix_prob)] if cfg.background_mix_prob > 0 else []
    return v2.Compose(
        [
            v2.ToImage(),
            *mixing,
            random_resized_crop(cfg.image_size, recipe.STRONG_CROP_SCALE),
            v2.RandomRotation(recipe.ROTATION_DEGREES, interpolation=v2.InterpolationMode.BILINEAR),
            v2.RandomPerspective(recipe.PERSPECTIVE_DISTORTION, p=recipe.PERSPECTIVE_PROB),
            v2.RandomApply(
                [v2.ElasticTransform(alpha=recipe.ELASTIC_ALPHA, sigma=recipe.ELASTIC_SIGMA)], p=recipe.ELASTIC_PROB
            ),
            v2.ToDtype(torch.float32, scale=True),
            v2.ColorJitter(*recipe.STRONG_COLOR_JITTER),
            v2.RandomGrayscale(recipe.GRAYSCALE_PROB),
            v2.RandomInvert(recipe.INVERT_PROB),
            v2.RandomSolarize(recipe.SOLARIZE_THRESHOLD, p=recipe.SOLARIZE_PROB),
            v2.RandomApply([v2.GaussianBlur(recipe.BLUR_KERNEL_SIZE, sigma=recipe.BLUR_SIGMA)], p=recipe.BLUR_PROB),
            v2.Normalize(mean, std),
            v2.RandomErasing(recipe.ERASING_PROB, scale=recipe.ERASING_SCALE, ratio=recipe.ERASING_RATIO),
            v2.ToPureTensor(),
        ]
    )


def random_resized_crop(size: int, scale: tuple[float, float]) -> v2.RandomResizedCrop:
    """RandomResizedCrop to size x size of a box of area ``scale`` with the recipe's aspect ratios."""
    return v2.RandomResizedCrop(size, scale=scale, ratio=recipe.CROP_RATIO, antialias=True)


def build_train_transform(
    cfg: Config, mean: Sequence[float], std: Sequence[float]
) -> recipe.WeakOrStrong[PIL.Image.Image]:
    """The per-sample train transform: RGB PIL image (any size) -> float 3 x image_size x image_size, normalised;
    backgrounds for mixing from :func:`~.background.background_pool`."""
    return recipe.WeakOrStrong(
        weak_pipeline(cfg, mean, std), strong_pipeline(cfg, background_pool(cfg), mean, std), cfg.strong_aug_prob
    )

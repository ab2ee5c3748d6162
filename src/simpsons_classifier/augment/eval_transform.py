"""The evaluation and inference transform (resize, centre crop, normalise): one for every augmentation engine, so
evaluation and serving see the same images whichever engine trained the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import PIL.Image
import torch
from torchvision.transforms import v2


def build_eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """Shorter side resized to ``image_size``, centre crop ``image_size``, float tensor, normalised."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.ToPureTensor(),
        ]
    )


def mirrored(transform: Callable[[PIL.Image.Image], torch.Tensor]) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """``transform``, then a left-right mirror: the image as the training recipe's horizontal flips show it."""
    return v2.Compose([transform, v2.RandomHorizontalFlip(p=1.0)])  # a Compose, not a lambda: it pickles to workers

"""The seam: ``cfg.augment_engine`` names the builder of the per-sample train transform.

Each builder takes (cfg, mean, std) and returns a callable RGB PIL image -> 3 x image_size x image_size tensor:
normalised float (``torchvision``, :mod:`.torchvision_engine`, the reference the others are checked and
benchmarked against) or uint8 that :class:`~.fused.Normalise` turns into the same on the device (``fused``,
OpenCV, :mod:`.fused`, the default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import PIL.Image
import torch

from simpsons_classifier.augment import fused, recipe, torchvision_engine
from simpsons_classifier.config import Config

TrainTransform = Callable[[PIL.Image.Image], torch.Tensor]
ENGINES: dict[str, Callable[[Config, Sequence[float], Sequence[float]], recipe.WeakOrStrong]] = {
    "fused": fused.build_train_transform,
    "torchvision": torchvision_engine.build_train_transform,
}


def build_train_transform(cfg: Config, mean: Sequence[float], std: Sequence[float]) -> TrainTransform:
    """The per-sample train transform of the engine ``cfg.augment_engine``."""
    return ENGINES[cfg.augment_engine](cfg, mean, std)


def build_view_pair_transform(cfg: Config, mean: Sequence[float], std: Sequence[float]) -> recipe.WeakAndStrong:
    """The engine's weak and strong pipelines, both applied to each sample: the two views of an unlabelled image
    (semi-supervised training). Same output as :func:`build_train_transform`, twice."""
    transform = ENGINES[cfg.augment_engine](cfg, mean, std)
    return recipe.WeakAndStrong(transform.weak, transform.strong)

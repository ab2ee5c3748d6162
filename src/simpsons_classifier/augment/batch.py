"""Batch-level augmentation: MixUp and CutMix (torchvision.transforms.v2), with soft targets either way."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn.functional import one_hot
from torchvision.transforms import v2

from simpsons_classifier.config import Config

BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MixUpOrCutMix:
    """With probability ``p``, blend a batch with itself shifted by one: one of ``mixers`` picked at random.

    MixUp averages whole images, CutMix pastes a random box from the other image; the targets are mixed in the
    same proportion. Takes images B x C x H x W (float, any device) and int64 labels B, returns the images and
    soft targets B x num_classes (float32, on the labels' device); a batch left alone gets one-hot targets, so
    the loss always sees the same kind of target. Randomness comes from torch's RNG only.
    """

    def __init__(self, mixers: Sequence[v2.Transform], num_classes: int, p: float) -> None:
        if not mixers:
            raise ValueError("MixUpOrCutMix needs at least one mixer")
        self.mixers = list(mixers)
        self.num_classes = num_classes
        self.p = p

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) >= self.p:
            return images, one_hot(labels, self.num_classes).float()
        mixer = self.mixers[int(torch.randint(len(self.mixers), ()))]
        return mixer(images, labels)


def build_batch_mixer(cfg: Config, num_classes: int) -> BatchMixer | None:
    """MixUp (``cfg.mixup_alpha``) / CutMix (``cfg.cutmix_alpha``) applied with probability ``cfg.mix_prob``.

    Only the methods with an alpha above 0 take part. None when mixing is off (both alphas 0, or mix_prob 0).
    """
    mixers = [
        mixer(alpha=alpha, num_classes=num_classes)
        for mixer, alpha in ((v2.MixUp, cfg.mixup_alpha), (v2.CutMix, cfg.cutmix_alpha))
        if alpha > 0
    ]
    if not mixers or cfg.mix_prob == 0:
        return None
    return MixUpOrCutMix(mixers, num_classes, cfg.mix_prob)

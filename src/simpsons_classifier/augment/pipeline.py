"""One batch pipeline between the DataLoader and the model, as timm's ``PrefetchLoader`` does.

The training loop asks for ``(images, targets)`` and never learns how they were made. Here, per engine: the
per-sample transform the workers run, the collate function, and on the device the GPU augmentation (when on),
the normalisation of uint8 samples (the fused engine hands them over raw, a quarter of the bytes) and
MixUp/CutMix (targets become soft, one-hot when a batch is left unmixed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from simpsons_classifier.augment.batch import build_batch_mixer
from simpsons_classifier.augment.engines import build_train_transform
from simpsons_classifier.augment.fused import Normalise, collate
from simpsons_classifier.augment.gpu import build_device_augment
from simpsons_classifier.config import Config


class BatchPipeline:
    """``pipeline.sample_transform`` / ``pipeline.collate`` go to the Dataset and DataLoader;
    ``pipeline.batches(loader)`` yields model-ready ``(images, targets)`` on ``device``."""

    def __init__(
        self, config: Config, mean: Sequence[float], std: Sequence[float], num_classes: int, device: torch.device
    ) -> None:
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.device_augment = build_device_augment(config, mean, std, self.device)
        self.sample_transform = (self.device_augment.per_sample if self.device_augment is not None
                                 else build_train_transform(config, mean, std))
        self.collate = collate
        self.normalise = Normalise(mean, std)
        self.mixer = build_batch_mixer(config, num_classes)

    def batches(self, loader: Iterable) -> DeviceBatches:
        return DeviceBatches(loader, self)

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor):
        """One loader batch -> (normalised images on the device, targets)."""
        if self.device_augment is not None:
            images = self.device_augment(*images)  # (canvases, metadata) -> the augmented batch, on the device
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        if images.dtype == torch.uint8:  # raw samples of the fused engine
            images = self.normalise(images)
        targets = labels.to(self.device, non_blocking=True)
        if self.mixer is not None:
            images, targets = self.mixer(images, targets)
        return images, targets


class DeviceBatches:
    """A loader seen through a :class:`BatchPipeline`; sized like the loader."""

    def __init__(self, loader: Iterable, pipeline: BatchPipeline) -> None:
        self.loader = loader
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield self.pipeline(images, labels)

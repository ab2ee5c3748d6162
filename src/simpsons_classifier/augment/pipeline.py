"""One batch pipeline between the DataLoader and the model, as timm's ``PrefetchLoader`` does.

The training loop asks for ``(images, targets)`` and never learns how they were made. Here, per engine: the
per-sample transform the workers run, the collate function, and on the device the GPU augmentation (when on),
the normalisation of uint8 samples (the fused engine hands them over raw, a quarter of the bytes) and
MixUp/CutMix (targets become soft, one-hot when a batch is left unmixed), then, with ``outlier_exposure``,
background crops appended with uniform targets (:mod:`.outliers`).

A semi-supervised run (``unlabeled_dir``) pairs each labelled batch with a batch of unlabelled images, each as
its weak and its strong view (FixMatch). Both views come from the CPU engine in the workers, also with
``gpu_augment`` (whose one-view-per-sample canvases would need a second canvas per image); MixUp/CutMix stay on
the labelled batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import torch

from simpsons_classifier.augment.background import load_backgrounds
from simpsons_classifier.augment.batch import build_batch_mixer
from simpsons_classifier.augment.engines import build_train_transform, build_view_pair_transform
from simpsons_classifier.augment.fused import Normalise, collate
from simpsons_classifier.augment.gpu import build_device_augment
from simpsons_classifier.augment.outliers import BackgroundOutliers, with_uniform_rows
from simpsons_classifier.config import Config


class Views(NamedTuple):
    """A batch of unlabelled images as two model-ready views on the device."""

    weak: torch.Tensor
    strong: torch.Tensor


def collate_views(batch: Sequence[tuple[tuple[torch.Tensor, torch.Tensor], int]]):
    """DataLoader collate for ((weak, strong), label) samples: ((weak batch, strong batch), labels)."""
    weak, labels = collate([(views[0], label) for views, label in batch])
    strong, _ = collate([(views[1], label) for views, label in batch])
    return (weak, strong), labels


class BatchPipeline:
    """``pipeline.sample_transform`` / ``pipeline.collate`` go to the Dataset and DataLoader;
    ``pipeline.batches(loader)`` yields model-ready ``(images, targets)`` on ``device``. With ``unlabeled_dir``,
    ``pipeline.view_transform`` / ``pipeline.collate_views`` go to the unlabelled Dataset and DataLoader and
    ``pipeline.batches(loader, unlabeled_loader)`` yields ``(images, targets, Views)``."""

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
        self.num_classes = num_classes
        self.outliers = (BackgroundOutliers(load_backgrounds(config.background_dir), config.outlier_exposure)
                         if config.outlier_exposure > 0 else None)
        self.view_transform = build_view_pair_transform(config, mean, std) if config.unlabeled_dir else None
        self.collate_views = collate_views

    def batches(self, loader: Iterable, unlabeled: Iterable | None = None) -> DeviceBatches:
        """``loader``'s batches, each with the next batch of ``unlabeled`` (as :class:`Views`) when given."""
        return DeviceBatches(loader, self, unlabeled)

    def views(self, images: Sequence[torch.Tensor]) -> Views:
        """One unlabelled loader batch (weak, strong) -> both views normalised on the device."""
        weak, strong = images
        return Views(self._on_device(weak), self._on_device(strong))

    def _on_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        if images.dtype == torch.uint8:  # raw samples of the fused engine
            images = self.normalise(images)
        return images

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor):
        """One loader batch -> (normalised images on the device, targets)."""
        if self.device_augment is not None:
            images = self.device_augment(*images)  # (canvases, metadata) -> the augmented batch, on the device
        images = self._on_device(images)
        targets = labels.to(self.device, non_blocking=True)
        if self.mixer is not None:
            images, targets = self.mixer(images, targets)
        if self.outliers is not None:
            outliers = self._on_device(self.outliers.draw(len(images), *images.shape[-2:]))
            images, targets = torch.cat([images, outliers]), with_uniform_rows(targets, len(outliers), self.num_classes)
        return images, targets


class DeviceBatches:
    """A loader (with an unlabelled one beside it) seen through a :class:`BatchPipeline`; sized like the loader."""

    def __init__(self, loader: Iterable, pipeline: BatchPipeline, unlabeled: Iterable | None = None) -> None:
        self.loader = loader
        self.pipeline = pipeline
        self.unlabeled = unlabeled

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.unlabeled is None:
            for images, labels in self.loader:
                yield self.pipeline(images, labels)
            return
        for (images, labels), (views, _) in zip(self.loader, self.unlabeled):
            yield *self.pipeline(images, labels), self.pipeline.views(views)

"""A torch Dataset over scanned samples."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import UnreadableImage, load_rgb
from .scan import DatasetError, Sample

UNLABELED_TARGET = -1
"""The class index of every image of a dataset without classes (an unlabelled folder)."""


class ImageDataset(Dataset):
    """(transformed image, class index) pairs (:data:`UNLABELED_TARGET` for every image when ``classes`` is None: an
    unlabelled folder). A file that stopped decoding after the scan is replaced by the
    next sample, so an epoch never dies halfway. The first such file of a class is named in a warning, or, when
    none of the class's files is there any more (its folder deleted or moved during the run), the class is; the
    others are replaced without one (once per process: each DataLoader worker says it once)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str] | None,
        transform: Callable[[Image.Image], torch.Tensor],
        decode_size: int | None = None,
    ) -> None:
        self.samples = list(samples)
        if classes is None:
            self.targets = [UNLABELED_TARGET] * len(self.samples)
        else:
            index = {name: i for i, name in enumerate(classes)}
            unknown = sorted({s.label for s in samples} - index.keys())
            if unknown:
                raise ValueError(f"labels not among the model's classes: {unknown[:10]}")
            self.targets = [index[s.label] for s in samples]
        self.transform = transform
        # JPEGs decode at a reduced scale that still covers twice the output size: same pixels, less work.
        self.draft_size = (2 * decode_size, 2 * decode_size) if decode_size else None
        self.unreadable: set[int] = set()
        self.warned_classes: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.samples)):
            j = (i + offset) % len(self.samples)
            if j in self.unreadable:
                continue
            try:
                image = load_rgb(self.samples[j].path, draft_size=self.draft_size)
            except (UnreadableImage, OSError) as error:
                self.unreadable.add(j)
                self._warn_once_per_class(self.samples[j], error)
                continue
            return self.transform(image), self.targets[j]
        raise DatasetError("no image in the dataset can be read any more (were its files moved or deleted?)")

    def _warn_once_per_class(self, sample: Sample, error: Exception) -> None:
        if sample.label in self.warned_classes:
            return
        self.warned_classes.add(sample.label)
        files = [s.path for s in self.samples if s.label == sample.label]
        if not any(os.path.isfile(path) for path in files):
            warnings.warn(f"class {sample.label!r}: none of its {len(files)} files is there any more (deleted or moved "
                          "while the run was reading them?); other images take their place", stacklevel=3)
        else:
            warnings.warn(f"{sample.path}: {error}; another image takes its place (further unreadable files of class "
                          f"{sample.label!r} are replaced without a warning)", stacklevel=3)

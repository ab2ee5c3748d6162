"""A torch Dataset over scanned samples."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import UnreadableImage, load_rgb
from .scan import DatasetError, Sample


class ImageDataset(Dataset):
    """(transformed image, class index) pairs. A file that stopped decoding after the scan is replaced by the
    next sample with a warning that names it, so an epoch never dies halfway."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        decode_size: int | None = None,
    ) -> None:
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({s.label for s in samples} - index.keys())
        if unknown:
            raise ValueError(f"labels not among the model's classes: {unknown[:10]}")
        self.samples = list(samples)
        self.targets = [index[s.label] for s in samples]
        self.transform = transform
        # JPEGs decode at a reduced scale that still covers twice the output size: same pixels, less work.
        self.draft_size = (2 * decode_size, 2 * decode_size) if decode_size else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.samples)):
            j = (i + offset) % len(self.samples)
            try:
                image = load_rgb(self.samples[j].path, draft_size=self.draft_size)
            except (UnreadableImage, OSError) as error:
                warnings.warn(f"{self.samples[j].path}: {error}; using another image in its place", stacklevel=2)
                continue
            return self.transform(image), self.targets[j]
        raise DatasetError("no image in the dataset can be read any more")

"""A loaded run's model over a list of samples: the one loop that evaluation, robustness and open-set share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..augment import build_eval_transform
from ..data.dataset import ImageDataset
from ..data.scan import Sample
from ..training import LoadedModel
from ..training.validate import predict

BATCH_SIZE = 64


def eval_transform(loaded: LoadedModel) -> Callable[[Image.Image], torch.Tensor]:
    return build_eval_transform(loaded.config.image_size, loaded.mean, loaded.std)


def sample_logits(
    loaded: LoadedModel,
    samples: list[Sample],
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "predicting",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of ``loaded``'s model over ``samples`` on the best device; ``transform`` defaults to the
    run's eval transform, ``wrap`` wraps the model (test-time augmentation)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    model = loaded.model.to(device, memory_format=memory_format)
    dataset = ImageDataset(samples, loaded.classes, transform or eval_transform(loaded),
                           decode_size=loaded.config.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(4, torch.get_num_threads()))
    return predict(wrap(model) if wrap else model, loader, device, loaded.config.amp, loaded.config.channels_last,
                   progress, desc)

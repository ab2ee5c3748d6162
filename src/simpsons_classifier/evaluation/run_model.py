"""A loaded run's model over a list of samples: the one loop that evaluation, robustness, open-set scores and
discovery share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..augment import build_eval_transform, mirrored
from ..data.dataset import ImageDataset
from ..data.scan import Sample
from ..models import FeaturesAndLogits
from ..training import LoadedModel
from ..training.validate import predict_outputs

BATCH_SIZE = 64


def eval_transform(loaded: LoadedModel) -> Callable[[Image.Image], torch.Tensor]:
    return build_eval_transform(loaded.config.image_size, loaded.mean, loaded.std)


def mirrored_transform(loaded: LoadedModel) -> Callable[[Image.Image], torch.Tensor]:
    """The eval transform, then a left-right mirror: the image as training's horizontal flips show it."""
    return mirrored(eval_transform(loaded))


@dataclass(frozen=True)
class ModelOutputs:
    """What the model says about a list of images, row by row."""

    features: torch.Tensor
    """N×D float32: the pooled penultimate features the classifier reads."""
    logits: torch.Tensor
    """N×C float32."""
    targets: torch.Tensor
    """N: the samples' class indices (meaningless for images of classes the model does not know)."""

    @classmethod
    def concat(cls, parts: list[ModelOutputs]) -> ModelOutputs:
        return cls(*(torch.cat([getattr(p, name) for p in parts]) for name in ("features", "logits", "targets")))


def sample_outputs(
    loaded: LoadedModel,
    samples: list[Sample],
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "predicting",
) -> ModelOutputs:
    """Features, logits and targets of ``loaded``'s plain model over ``samples``. A sample's label need not be
    one of the model's classes (images of unknown characters): its target is then -1."""
    if not samples:
        return ModelOutputs(torch.empty(0, loaded.model.num_features), torch.empty(0, len(loaded.classes)),
                            torch.empty(0, dtype=torch.long))
    (logits, features), targets = _run(loaded, _as_known(loaded, samples), FeaturesAndLogits(loaded.model),
                                       transform, batch_size, progress, desc)
    known = set(loaded.classes)
    unknown = torch.tensor([s.label not in known for s in samples], dtype=torch.bool)
    return ModelOutputs(features, logits, targets.masked_fill(unknown, -1))


def sample_embeddings(
    loaded: LoadedModel,
    samples: list[Sample],
    embedding: Callable[[nn.Module], nn.Module],
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "embedding",
) -> torch.Tensor:
    """N×D: what ``embedding(loaded.model)`` gives for each of ``samples``, whatever their labels."""
    (embedded, *_), _ = _run(loaded, _as_known(loaded, samples), embedding(loaded.model), transform, batch_size,
                             progress, desc)
    return embedded


def _as_known(loaded: LoadedModel, samples: list[Sample]) -> list[Sample]:
    """``samples``, those of classes the model does not know labelled as its first class (the data set refuses
    other labels, and their targets are not read)."""
    known = set(loaded.classes)
    return [s if s.label in known else Sample(s.path, loaded.classes[0]) for s in samples]


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
    model = wrap(loaded.model) if wrap else loaded.model
    (logits, *_), targets = _run(loaded, samples, model, transform, batch_size, progress, desc)
    return logits, targets


def _run(loaded: LoadedModel, samples: list[Sample], model: nn.Module,
         transform: Callable[[Image.Image], torch.Tensor] | None, batch_size: int, progress: bool, desc: str
         ) -> tuple[list[torch.Tensor], torch.Tensor]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    dataset = ImageDataset(samples, loaded.classes, transform or eval_transform(loaded),
                           decode_size=loaded.config.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(4, torch.get_num_threads()))
    outputs, targets = predict_outputs(model, loader, device, loaded.config.amp, loaded.config.channels_last,
                                       progress, desc)
    return outputs, targets

"""``head_init: probe``: fit the new head on frozen features before fine-tuning (LP-FT).

A freshly initialised head sends random gradients into the backbone for the first hundreds of steps; on a small
dataset at the reference's learning rates the loss barely moves and errors collapse into a few "sink" classes.
Fitting the head first as a logistic regression on the frozen backbone's features of the un-augmented training
images starts fine-tuning from a head that already classifies, so the backbone is adjusted, not wrecked
(Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"). It is fitted on each image and its mirror
image (:func:`probe_images`), the two ways the recipe's flips show a character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm

from ..augment import mirrored
from ..data.dataset import ImageDataset
from ..data.scan import Sample
from ..models import PenultimateFeatures

PROBE_C = 1.0
"""Inverse L2 strength of the probe (scikit-learn's default). The features are used as they are, not
standardised: some pooled channels are nearly constant, and dividing by their tiny spread gives weights that
turn the smallest change of those channels during fine-tuning into huge logits."""
PROBE_MAX_ITER = 1000


def probe_images(samples: Sequence[Sample], classes: Sequence[str] | None,
                 transform: Callable[[Image.Image], torch.Tensor], decode_size: int | None = None) -> ConcatDataset:
    """Each image through ``transform`` (the eval transform: un-augmented), then each mirrored left-right, as the
    recipe's flips show a character: what the probe head is fitted on, a grown head's new rows are imprinted
    from and fitted on, and (``classes`` None) the semi-supervised start labels. With every label it adds 0 to 1.4 points to the
    probe, with 2 or 4 labels a character 1.5 to 2.3 (README, ``benchmarks/linear_probe.py``)."""
    return ConcatDataset([ImageDataset(samples, classes, view, decode_size=decode_size)
                          for view in (transform, mirrored(transform))])


@torch.no_grad()
def pre_logit_features(model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True,
                       embedding: Callable[[nn.Module], nn.Module] = PenultimateFeatures):
    """(features N×D, targets N) from the layer the classifier reads (or what ``embedding(model)`` gives), the
    model in eval mode."""
    was_training = model.training
    model.eval()
    embedded = embedding(model)
    features, targets = [], []
    for images, labels in tqdm(loader, desc="probe features", leave=False, disable=not progress):
        features.append(embedded(images.to(device)).float().cpu())
        targets.append(labels)
    model.train(was_training)
    return torch.cat(features).numpy(), torch.cat(targets).numpy()


def fit_head(model: nn.Module, features: np.ndarray, targets: np.ndarray) -> float:
    """Set the classifier's weights to a logistic regression on ``features`` (N×D, the frozen model's
    :func:`pre_logit_features`) and ``targets`` (N class indices); returns its training accuracy.

    Classes missing from ``targets`` keep a bias far below the others, so they are never predicted by default
    but still learn during fine-tuning."""
    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER).fit(features, targets)
    weight, bias = probe.coef_, probe.intercept_
    classifier = model.get_classifier()
    new_weight = torch.zeros_like(classifier.weight)
    new_bias = torch.full_like(classifier.bias, float(bias.min()) - 10.0)
    present = torch.as_tensor(probe.classes_)
    if len(probe.classes_) == 2:  # scikit-learn keeps one row for two classes: logits +z/2 and -z/2
        weight, bias = np.stack([-weight[0], weight[0]]) / 2, np.array([-bias[0], bias[0]]) / 2
    new_weight[present] = torch.as_tensor(weight, dtype=new_weight.dtype)
    new_bias[present] = torch.as_tensor(bias, dtype=new_bias.dtype)
    classifier.weight.data.copy_(new_weight)
    classifier.bias.data.copy_(new_bias)
    return float(probe.score(features, targets))

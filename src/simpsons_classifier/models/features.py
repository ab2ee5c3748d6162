"""What a classifier's images are embedded as, beside its logits.

The unknown-character scores read the features the classifier reads (timm's ``forward_head(pre_logits=True)``:
pooled, after the head's dropout, which is off in eval mode); the discovery of new characters adds the pooled maps
of the last feature stages to them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PenultimateFeatures(nn.Module):
    """``forward(images) -> N×D``: the pooled penultimate features of a timm classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)

    def with_penultimate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the penultimate features, this embedding of ``images``): the same features twice."""
        features = PenultimateFeatures.forward(self, images)
        return features, features


class FeaturesAndLogits(PenultimateFeatures):
    """``forward(images) -> (logits N×C, features N×D)`` of a timm classifier."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = super().forward(images)
        return self.model.get_classifier()(features), features


class PenultimateAndStages(nn.Module):
    """``forward(images) -> N×D``: a timm classifier's pooled penultimate features beside the mean-pooled maps of
    its last two feature stages (strides 16 and 32 on the registered families), each L2-normalised.

    What new characters are clustered by. The penultimate features are shaped to tell the known characters apart,
    and a new character drawn in two styles often lands in two places there; the coarser stages keep more of the
    shapes and colours the styles share (``benchmarks/discover.py``, README "New characters")."""

    STAGES = 2

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.with_penultimate(images)[1]

    def with_penultimate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the penultimate features as the classifier reads them, this embedding of ``images``) from one pass."""
        final, stages = self.model.forward_intermediates(images, indices=self.STAGES)
        parts = [self.model.forward_head(final, pre_logits=True), *(stage.mean((2, 3)) for stage in stages)]
        return parts[0], torch.cat([F.normalize(part, dim=1) for part in parts], dim=1)


def discovery_embedding(model: nn.Module) -> nn.Module:
    """What ``simpsons discover`` clusters ``model``'s images by: :class:`PenultimateAndStages`, or the penultimate
    features alone for a timm model that cannot give its stages (no ``forward_intermediates``)."""
    return PenultimateAndStages(model) if hasattr(model, "forward_intermediates") else PenultimateFeatures(model)


class PenultimateBesideDiscovery(nn.Module):
    """``forward(images) -> N×(D + E)``: the penultimate features the classifier reads (D of them), then
    :func:`discovery_embedding`'s (E), from one pass through the backbone: what the semi-supervised start both
    scores and clusters its unlabelled images by."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.discovery = discovery_embedding(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.discovery.with_penultimate(images), dim=1)

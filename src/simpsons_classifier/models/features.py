"""A classifier's pooled penultimate features beside its logits, from one forward pass.

The unknown-character scores and the discovery of new characters read the features the classifier reads
(timm's ``forward_head(pre_logits=True)``: pooled, after the head's dropout, which is off in eval mode).
"""

from __future__ import annotations

import torch
from torch import nn


class FeaturesAndLogits(nn.Module):
    """``forward(images) -> (logits N×C, features N×D)`` of a timm classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return self.model.get_classifier()(features), features

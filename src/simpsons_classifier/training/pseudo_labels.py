"""FixMatch's pseudo-labels (Sohn et al., 2020), kept away from unknown characters.

Each unlabelled image's weak view is classified by the EMA model (the weights that are validated: steadier
targets than the moving model, Mean Teacher's argument, and the model whose validation logits the unknown-character
threshold is calibrated on, so the threshold means the same on both), without gradients. An image is

- *rejected* when its max-logit is below the known-character threshold: the run's unknown-character rule, which
  ``evaluation/openset.py`` calibrates after training, cannot exist yet, so the same rule (max-logit accepting
  :data:`KNOWN_SHARE` of the known validation images, the default score of ``openset.calibrate``) is calibrated
  here after every validation, on its logits. It lives in training, not evaluation, because training comes first
  in the data flow: evaluation may read training, not the other way;
- *pending* when it is accepted as known but its softmax confidence is below ``pseudo_label_threshold``;
- *used* otherwise: its class is the pseudo-label of its strong view, whose cross-entropy, averaged over all the
  unlabelled images of the step (FixMatch's normalisation, so the loss grows with the share used), is added to the
  labelled loss with weight ``unlabeled_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..models import freeze_frozen_norms
from .validate import autocast

KNOWN_SHARE = 0.95
"""Share of the known validation images the known-character threshold accepts: ``evaluation.openset.TARGET_TPR``
(a test keeps the two equal)."""


def known_threshold(val_max_logits: torch.Tensor) -> float:
    """The max-logit that accepts :data:`KNOWN_SHARE` of the validation images whose max-logits are given, as
    ``evaluation.openset.calibrate`` picks it."""
    values = val_max_logits.float().numpy()
    return float(np.quantile(values, 1 - KNOWN_SHARE, method="lower"))


@dataclass(frozen=True)
class PseudoLabels:
    """The teacher's verdict on a batch of unlabelled images (every mask of length N)."""

    labels: torch.Tensor
    """N class indices (meaningful where ``used``)."""
    used: torch.Tensor
    """Accepted as known and confident: these train."""
    rejected: torch.Tensor
    """Below the known-character threshold: never pseudo-labelled."""
    pending: torch.Tensor
    """Accepted as known, not confident enough yet."""

    def counts(self) -> tuple[int, int, int]:
        """(used, rejected, pending): they add up to the images of the batch."""
        used, rejected, pending = torch.stack([self.used, self.rejected, self.pending]).sum(dim=1).tolist()
        return used, rejected, pending


def select_pseudo_labels(logits: torch.Tensor, confidence: float, known_at: float) -> PseudoLabels:
    """Pseudo-labels from the weak views' ``logits``: confident (softmax ``>= confidence``) and accepted as known
    (max-logit ``>= known_at``)."""
    logits = logits.float()
    known = logits.max(dim=1).values >= known_at
    probability, labels = F.softmax(logits, dim=1).max(dim=1)
    confident = probability >= confidence
    return PseudoLabels(labels, known & confident, ~known, known & ~confident)


@torch.no_grad()
def pseudo_label(teacher: nn.Module, student: nn.Module, weak: torch.Tensor, config: Config,
                 known_at: float) -> PseudoLabels:
    """Classify the weak views with ``teacher`` in eval mode. When the teacher is the trained model itself (no EMA),
    ``student``'s train mode and frozen norms are put back afterwards."""
    teacher.eval()
    with autocast(weak.device, config.amp):
        logits = teacher(weak)
    if teacher is student:
        student.train()
        freeze_frozen_norms(student)
    return select_pseudo_labels(logits, config.pseudo_label_threshold, known_at)


def unlabeled_loss(strong_logits: torch.Tensor, pseudo: PseudoLabels) -> torch.Tensor:
    """Cross-entropy of the strong views against the used pseudo-labels, averaged over every image of the batch."""
    losses = F.cross_entropy(strong_logits.float(), pseudo.labels, reduction="none")
    return (losses * pseudo.used.float()).mean()

"""FixMatch's pseudo-labels (Sohn et al., 2020), kept away from unknown characters.

Each unlabelled image's weak view is classified by the EMA model (the weights that are validated: steadier
targets than the moving model, Mean Teacher's argument, and the model whose validation logits the unknown-character
threshold is calibrated on, so the threshold means the same on both), without gradients. An image is

- *rejected* when its max-logit is below the known-character threshold: the run's unknown-character rule, which
  ``evaluation/openset.py`` calibrates after training, cannot exist yet, so the same rule (max-logit accepting
  :data:`KNOWN_SHARE` of the known validation images, the default score of ``openset.calibrate``) is calibrated
  here after every validation, on its logits. It lives in training, not evaluation, because training comes first
  in the data flow: evaluation may read training, not the other way;
- *pending* when it is accepted as known but its softmax confidence is below the bar of its class: the fixed
  ``pseudo_label_threshold``, or, when that is null, the :class:`SelfAdaptiveThreshold` of FreeMatch;
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
"""Share of the known validation images the known-character threshold accepts (``evaluation.openset`` calibrates
every score to it too)."""


def known_threshold(val_scores: torch.Tensor | np.ndarray) -> float:
    """The score that accepts :data:`KNOWN_SHARE` of the validation images whose scores are given (their
    max-logits here; any open-set score in ``evaluation.openset.calibrate``)."""
    values = torch.as_tensor(val_scores).float().cpu().numpy()  # bf16 and CUDA tensors have no NumPy view
    return float(np.quantile(values, 1 - KNOWN_SHARE, method="lower"))


def accepted_as_known(logits: torch.Tensor, known_at: float) -> torch.Tensor:
    """The images whose max-logit reaches the known-character threshold :func:`known_threshold` calibrated (N)."""
    return logits.max(dim=1).values >= known_at


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


def select_pseudo_labels(logits: torch.Tensor, confidence: float | torch.Tensor, known_at: float) -> PseudoLabels:
    """Pseudo-labels from the weak views' ``logits``: confident (softmax ``>= confidence``, one bar for all or one
    per class) and accepted as known (max-logit ``>= known_at``)."""
    logits = logits.float()
    known = accepted_as_known(logits, known_at)
    probability, labels = F.softmax(logits, dim=1).max(dim=1)
    bar = confidence.to(labels.device)[labels] if isinstance(confidence, torch.Tensor) else confidence
    confident = probability >= bar
    return PseudoLabels(labels, known & confident, ~known, known & ~confident)


class SelfAdaptiveThreshold:
    """FreeMatch's self-adaptive threshold (Wang et al., 2023): one bar per class that follows the model's learning.

    The global bar is a moving average of the weak views' top softmax probability; each class's bar is the global
    one scaled by that class's moving-average probability over the most likely class's. Early on, when the model
    is unsure, many images train, the surest of them first; as it grows confident the bar rises towards FixMatch's,
    and classes it rarely predicts get a lower one. FreeMatch starts its averages at 1/C, the confidence of a
    model at chance; a run here starts from a classifier (the probe head), so the averages are bias-corrected as
    Adam's moments are instead: from the first step they are the mean of what the model has said so far. Only
    images accepted as known update them: unknown characters, rejected anyway, would otherwise pull every bar
    down. A fixed bar of 0.95 with the tens of steps a CPU run has leaves nearly every image pending (README's
    semi-supervised table).
    """

    MOMENTUM = 0.999
    """FreeMatch's."""

    def __init__(self, num_classes: int) -> None:
        self.steps = 0
        self.confidence = torch.zeros(())
        self.class_probability = torch.zeros(num_classes)

    @staticmethod
    def step_statistics(logits: torch.Tensor, known_at: float) -> torch.Tensor:
        """What one step adds, as one vector that sums over processes: [images accepted as known, the sum of their
        top softmax probabilities, then their softmax probabilities summed per class]."""
        logits = logits.float()
        known = accepted_as_known(logits, known_at)
        probability = F.softmax(logits[known], dim=1)
        return torch.cat([torch.tensor([float(known.sum())], device=logits.device),
                          probability.max(dim=1).values.sum().reshape(1), probability.sum(dim=0)]).cpu()

    def update(self, statistics: torch.Tensor) -> None:
        """Fold in one step's :meth:`step_statistics` (summed over every process). A step that accepted no image
        leaves the averages as they are."""
        images, top_sum, class_sums = statistics[0], statistics[1], statistics[2:]
        if images == 0:
            return
        self.steps += 1
        self.confidence.mul_(self.MOMENTUM).add_((1 - self.MOMENTUM) * top_sum / images)
        self.class_probability.mul_(self.MOMENTUM).add_((1 - self.MOMENTUM) * class_sums / images)

    def thresholds(self) -> torch.Tensor:
        """The bar of each class (C); every bar is 0 before the first update."""
        if self.steps == 0:
            return torch.zeros_like(self.class_probability)
        correction = 1 - self.MOMENTUM**self.steps
        confidence, class_probability = self.confidence / correction, self.class_probability / correction
        return confidence * class_probability / class_probability.max()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "confidence": self.confidence.clone(),
                "class_probability": self.class_probability.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.confidence = state["confidence"].clone()
        self.class_probability = state["class_probability"].clone()


@torch.no_grad()
def teacher_logits(teacher: nn.Module, student: nn.Module, weak: torch.Tensor, config: Config) -> torch.Tensor:
    """The weak views classified by ``teacher`` in eval mode. When the teacher is the trained model itself (no EMA),
    ``student``'s train mode and frozen norms are put back afterwards."""
    teacher.eval()
    with autocast(weak.device, config.amp):
        logits = teacher(weak)
    if teacher is student:
        student.train()
        freeze_frozen_norms(student)
    return logits.float()


def unlabeled_loss(strong_logits: torch.Tensor, pseudo: PseudoLabels) -> torch.Tensor:
    """Cross-entropy of the strong views against the used pseudo-labels, averaged over every image of the batch."""
    losses = F.cross_entropy(strong_logits.float(), pseudo.labels, reduction="none")
    return (losses * pseudo.used.float()).mean()

"""Rejecting characters the model was never trained on: a score per image, a threshold calibrated on the
validation split, and how well the score tells known from held-out characters.

Both scores read "higher means known": the largest logit, and the negative energy (logsumexp of the logits).
Softmax confidence is not one of them: normalising throws away the logits' overall size, which is what drops
on an unfamiliar input. The threshold accepts ``TARGET_TPR`` of the known validation images. The score kept is
the one with the better AUROC, known validation images against held-out ones, when the run kept classes out
(``holdout_classes``; the evaluation reports both scores, so the choice is in plain sight); without held-out
images there is nothing unknown to judge by, and the simpler max-logit is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ..data.scan import Sample
from ..storage import write_json_atomic
from ..training import LoadedModel
from .results import OpenSetFigures
from .run_model import sample_logits

SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_logit": lambda logits: logits.max(dim=1).values,
    "energy": lambda logits: torch.logsumexp(logits, dim=1),
}
DEFAULT_SCORE = "max_logit"
TARGET_TPR = 0.95
"""Share of known-character images the threshold accepts."""


@dataclass(frozen=True)
class OpenSetRule:
    """An image is a known character when ``SCORES[score](logits) >= threshold``."""

    score: str
    threshold: float

    def known(self, logits: torch.Tensor) -> torch.Tensor:
        return SCORES[self.score](logits) >= self.threshold

    @classmethod
    def read(cls, path: str | Path) -> OpenSetRule | None:
        """The rule stored at ``path`` (a run's openset.json), or None when there is none."""
        path = Path(path)
        if not path.is_file():
            return None
        stored = json.loads(path.read_text())
        return cls(stored["score"], float(stored["threshold"]))


def separation(known: np.ndarray, unknown: np.ndarray) -> dict[str, float]:
    """AUROC and the false-positive rate at ``TARGET_TPR`` of a score, known images being the positives."""
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    scores = np.r_[known, unknown]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return {"auroc": float(roc_auc_score(truth, scores)),
            "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, TARGET_TPR)])}


def compare_scores(known_logits: torch.Tensor, heldout_logits: torch.Tensor) -> dict[str, dict[str, float]]:
    return {name: separation(score(known_logits).numpy(), score(heldout_logits).numpy())
            for name, score in SCORES.items()}


@dataclass(frozen=True)
class Calibration:
    """The rule a run stores in ``RUN/openset.json`` and what it was calibrated on."""

    score: str
    threshold: float
    target_tpr: float
    val_images: int
    val_accepted: float
    heldout_images: int
    candidates: dict[str, dict[str, float]]
    """Each score's separation of known from held-out images, when the run kept classes out."""

    @property
    def rule(self) -> OpenSetRule:
        return OpenSetRule(self.score, self.threshold)

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


def calibrate(known_logits: torch.Tensor, heldout_logits: torch.Tensor | None = None) -> Calibration:
    """The rule (score and threshold) that accepts ``TARGET_TPR`` of the known images; the score is the one that
    separates known from held-out images best when there are held-out images."""
    candidates = compare_scores(known_logits, heldout_logits) if heldout_logits is not None else {}
    name = max(candidates, key=lambda n: candidates[n]["auroc"]) if candidates else DEFAULT_SCORE
    values = SCORES[name](known_logits).numpy()
    threshold = float(np.quantile(values, 1 - TARGET_TPR, method="lower"))
    return Calibration(
        score=name,
        threshold=threshold,
        target_tpr=TARGET_TPR,
        val_images=len(values),
        val_accepted=float((values >= threshold).mean()),
        heldout_images=0 if heldout_logits is None else len(heldout_logits),
        candidates=candidates,
    )


def heldout_logits(loaded: LoadedModel, heldout: list[Sample], progress: bool = True) -> torch.Tensor:
    """Plain (no TTA) logits of ``loaded``'s model over images of classes it does not know."""
    # Held-out labels are not among the model's classes; the targets are not used, so any known label will do.
    relabelled = [Sample(s.path, loaded.classes[0]) for s in heldout]
    logits, _ = sample_logits(loaded, relabelled, progress=progress, desc="open-set scores")
    return logits


def openset_figures(
    rule: OpenSetRule, known_logits: torch.Tensor, unknown_logits: torch.Tensor, heldout: list[Sample]
) -> OpenSetFigures:
    """Known validation images against held-out ones: AUROC and FPR at 95 % TPR of each score, and what
    ``rule`` accepts of each."""
    return OpenSetFigures(
        score=rule.score,
        threshold=rule.threshold,
        known_images=len(known_logits),
        heldout_images=len(unknown_logits),
        heldout_classes=sorted({s.label for s in heldout}),
        known_accepted=float(rule.known(known_logits).float().mean()),
        heldout_accepted=float(rule.known(unknown_logits).float().mean()),
        scores=compare_scores(known_logits, unknown_logits),
    )

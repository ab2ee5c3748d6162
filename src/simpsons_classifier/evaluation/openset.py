"""Rejecting characters the model was never trained on: a score per image (``ood_scores``), a threshold, and how
well the score tells known characters from unknown ones.

The threshold accepts ``TARGET_TPR`` of the known validation images. Which score a run keeps is decided on
held-out characters (``holdout_classes``), honestly: the held-out classes are split in two disjoint halves, the
score is chosen on the *selection* half and the figures are reported on the other, so a reported AUROC never
comes from the classes the choice was made on. Scores whose AUROC there is within one standard error of the best
are as good as it on so few images; among them the one that best rejects far-away images wins, measured on a
far-away set of its own (:func:`~.far_ood.far_selection_set`). Far-away inputs (photos, noise, any folder given)
are reported too. Without held-out classes there is nothing unknown to choose by, and the simple max-logit is
kept.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ..data.scan import Sample
from ..run_dir import RunDir
from ..storage import write_json_atomic
from ..training.pseudo_labels import KNOWN_SHARE, known_threshold
from .ood_scores import LOGIT_SCORES, SCORE_NAMES, FeatureBank, Score, fit_score
from .results import OpenSetFigures, Separation
from .run_model import ModelOutputs

DEFAULT_SCORES = ("msp_knn", "max_logit")
"""The score kept when no held-out characters choose one: the first of these the run has. MSP with the k-NN veto
ranks held-out characters within 0.04 AUROC of the best score on the stand-in (random and group split), fonts and
emoji, and rejects far-away images far better than the logit scores; centred k-NN, the best on the stand-in's
random split, lets far-away images through on emoji and on unseen drawing styles (README, "Unknown characters").
Max logit needs no feature bank."""
TARGET_TPR = KNOWN_SHARE
"""Share of known-character images the threshold accepts: the one training's pseudo-labels use."""


@dataclass(frozen=True)
class OpenSetRule:
    """An image is a known character when its score ``score`` is ``>= threshold``."""

    score: str
    threshold: float

    @property
    def needs_features(self) -> bool:
        return self.score not in LOGIT_SCORES

    @classmethod
    def read(cls, path: str | Path) -> OpenSetRule | None:
        """The rule stored at ``path`` (a run's openset.json), or None when there is none."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text())
            rule = cls(stored["score"], float(stored["threshold"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not an unknown-character rule ({type(error).__name__}: {error}): "
                             "`simpsons evaluate --run RUN` writes it again") from error
        if rule.score not in SCORE_NAMES:
            raise ValueError(f"{path}: unknown open-set score {rule.score!r}; use one of {', '.join(SCORE_NAMES)}")
        return rule


class OpenSetDetector:
    """A run's rule with its score fitted: ``known(features, logits)`` says which images are known characters."""

    def __init__(self, rule: OpenSetRule, bank: FeatureBank | None, score: Score | None = None) -> None:
        """``score``: the rule's score already fitted on ``bank``, when the caller has it; else it is fitted."""
        self.rule = rule
        self.bank = bank
        self.score: Score = score if score is not None else fit_score(rule.score, bank)

    @classmethod
    def from_run(cls, run: RunDir) -> OpenSetDetector | None:
        """The detector of ``run``, or None when the run has no rule."""
        rule = OpenSetRule.read(run.openset)
        if rule is None:
            return None
        if not run.feature_bank.is_file():
            if rule.needs_features:
                raise FileNotFoundError(f"{run.feature_bank} is missing, and the run's unknown-character score "
                                        f"({rule.score}) is fitted on it: `simpsons evaluate --run {run}` computes "
                                        "it again")
            return cls(rule, None)
        return cls(rule, FeatureBank.read(run.feature_bank))

    def scores(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.score(features, logits)

    def known(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.scores(features, logits) >= self.rule.threshold


def separation(known: np.ndarray, unknown: np.ndarray) -> Separation:
    """AUROC and the false-positive rate at ``TARGET_TPR`` of a score, known images being the positives."""
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    scores = np.r_[known, unknown]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return Separation(auroc=float(roc_auc_score(truth, scores)),
                      fpr_at_95_tpr=float(fpr[np.searchsorted(tpr, TARGET_TPR)]))


def compare_scores(scores: dict[str, Score], known: ModelOutputs, unknown: ModelOutputs) -> dict[str, Separation]:
    return {name: separation(score(known.features, known.logits).numpy(),
                             score(unknown.features, unknown.logits).numpy())
            for name, score in scores.items()}


def split_heldout_classes(classes: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(selection, report): disjoint halves of the held-out classes, drawn with ``seed``. With one held-out class
    there is nothing to split: it is reported, and the score is not chosen on it."""
    shuffled = sorted(classes)
    random.Random(seed).shuffle(shuffled)
    if len(shuffled) < 2:
        return [], shuffled
    half = len(shuffled) // 2
    return sorted(shuffled[:half]), sorted(shuffled[half:])


def subset(outputs: ModelOutputs, samples: list[Sample], classes: list[str]) -> ModelOutputs:
    keep = torch.tensor([s.label in classes for s in samples], dtype=torch.bool)
    return ModelOutputs(outputs.features[keep], outputs.logits[keep], outputs.targets[keep])


@dataclass(frozen=True)
class Calibration:
    """The rule a run stores in ``RUN/openset.json`` and what it was chosen on."""

    score: str
    threshold: float
    target_tpr: float
    val_images: int
    val_accepted: float
    selection_classes: list[str]
    """Held-out classes the score was chosen on; never those the figures are reported on."""
    selection_images: int
    candidates: dict[str, Separation]
    """Each score's separation of known validation images from the selection classes' images."""
    selection_far_images: int = 0
    far_candidates: dict[str, Separation] = field(default_factory=dict)
    """Each score's separation of known validation images from the far-away selection images: the tie-break."""
    tied: list[str] = field(default_factory=list)
    """The scores within one standard error of the best AUROC on the selection classes."""

    @property
    def rule(self) -> OpenSetRule:
        return OpenSetRule(self.score, self.threshold)

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


def auroc_standard_error(auroc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUROC measured on so many positives and negatives."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    variance = (auroc * (1 - auroc) + (positives - 1) * (q1 - auroc ** 2)
                + (negatives - 1) * (q2 - auroc ** 2)) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def tied_with_best(candidates: dict[str, Separation], positives: int, negatives: int) -> list[str]:
    """The scores of ``candidates`` whose AUROC is within one standard error of the best one's."""
    best = max(separation.auroc for separation in candidates.values())
    margin = auroc_standard_error(best, positives, negatives)
    return [name for name, separation in candidates.items() if separation.auroc >= best - margin]


def calibrate(known: ModelOutputs, scores: dict[str, Score], selection: ModelOutputs | None = None,
              selection_classes: list[str] | None = None, selection_far: ModelOutputs | None = None) -> Calibration:
    """The rule that accepts ``TARGET_TPR`` of the ``known`` validation images, with the one of ``scores``
    (:func:`~.ood_scores.fit_scores`) that separates them best from ``selection`` (images of held-out classes) when
    given, ties (:func:`tied_with_best`) going to the one that separates them best from ``selection_far``
    (far-away images); else the first of ``DEFAULT_SCORES`` in ``scores``."""
    candidates = compare_scores(scores, known, selection) if selection is not None and len(selection.logits) else {}
    far_candidates = (compare_scores(scores, known, selection_far)
                      if candidates and selection_far is not None and len(selection_far.logits) else {})
    tied = tied_with_best(candidates, len(known.logits), len(selection.logits)) if candidates else []
    name = (max(tied, key=lambda n: (far_candidates[n].auroc if far_candidates else 0.0, candidates[n].auroc))
            if tied else next(n for n in DEFAULT_SCORES if n in scores))
    values = scores[name](known.features, known.logits).numpy()
    threshold = known_threshold(values)
    return Calibration(
        score=name,
        threshold=threshold,
        target_tpr=TARGET_TPR,
        val_images=len(values),
        val_accepted=float((values >= threshold).mean()),
        selection_classes=list(selection_classes or []),
        selection_images=0 if selection is None else len(selection.logits),
        candidates=candidates,
        selection_far_images=len(selection_far.logits) if far_candidates else 0,
        far_candidates=far_candidates,
        tied=tied,
    )


def openset_figures(detector: OpenSetDetector, scores: dict[str, Score], known: ModelOutputs, near: ModelOutputs,
                    near_classes: list[str], far: dict[str, ModelOutputs]) -> OpenSetFigures:
    """Known validation images against unknown ones, near (held-out characters of the report half) and far (each
    set of ``far``, and all of them together): each of ``scores``' AUROC and FPR at 95 % TPR, what the run's rule
    accepts of each."""
    far_all = ModelOutputs.concat(list(far.values())) if far else None

    def accepted(outputs: ModelOutputs | None) -> float | None:
        return None if outputs is None or not len(outputs.logits) else float(
            detector.known(outputs.features, outputs.logits).float().mean())

    return OpenSetFigures(
        chosen=detector.rule.score,
        threshold=detector.rule.threshold,
        known_images=len(known.logits),
        near_images=len(near.logits),
        near_classes=near_classes,
        far_images={name: len(outputs.logits) for name, outputs in far.items()},
        known_accepted=accepted(known),
        near_accepted=accepted(near),
        far_accepted=accepted(far_all),
        near=compare_scores(scores, known, near) if len(near.logits) else {},
        far=compare_scores(scores, known, far_all) if far_all is not None else {},
        far_by_set={name: compare_scores(scores, known, outputs) for name, outputs in far.items()},
    )

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

from ..data.run_data import RunData, read_heldout
from ..data.scan import Sample
from ..training import LoadedModel, load_model
from .run_model import sample_logits

SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_logit": lambda logits: logits.max(dim=1).values,
    "energy": lambda logits: torch.logsumexp(logits, dim=1),
}
DEFAULT_SCORE = "max_logit"
TARGET_TPR = 0.95
"""Share of known-character images the threshold accepts."""
OPENSET_FILE = "openset.json"


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


def calibrate(known_logits: torch.Tensor, heldout_logits: torch.Tensor | None = None) -> dict:
    """The rule (score and threshold) and what it was calibrated on, as stored in ``RUN/openset.json``."""
    candidates = compare_scores(known_logits, heldout_logits) if heldout_logits is not None else {}
    name = max(candidates, key=lambda n: candidates[n]["auroc"]) if candidates else DEFAULT_SCORE
    values = SCORES[name](known_logits).numpy()
    threshold = float(np.quantile(values, 1 - TARGET_TPR, method="lower"))
    return {
        **asdict(OpenSetRule(name, threshold)),
        "target_tpr": TARGET_TPR,
        "val_images": len(values),
        "val_accepted": float((values >= threshold).mean()),
        "heldout_images": 0 if heldout_logits is None else len(heldout_logits),
        "candidates": candidates,
    }


def run_logits(loaded: LoadedModel, samples: list[Sample], progress: bool = True) -> torch.Tensor:
    """Plain (no TTA) logits of ``loaded``'s model over ``samples``, whatever their labels."""
    # Held-out labels are not among the model's classes; the targets are not used, so any known label will do.
    relabelled = [Sample(s.path, loaded.classes[0]) for s in samples]
    logits, _ = sample_logits(loaded, relabelled, progress=progress, desc="open-set scores")
    return logits


def calibrate_run(run_dir: str | Path, progress: bool = True) -> dict:
    """Calibrate the open-set rule of ``RUN/best.pt`` on its validation split; written to ``RUN/openset.json``."""
    run_dir = Path(run_dir)
    loaded = load_model(run_dir)
    heldout = read_heldout(run_dir)
    known_logits = run_logits(loaded, RunData.read(run_dir).split.val, progress)
    heldout_logits = run_logits(loaded, heldout, progress) if heldout else None
    return _write_calibration(run_dir, known_logits, heldout_logits)


def openset_report(run_dir: str | Path, out_dir: str | Path, progress: bool = True) -> dict | None:
    """Known validation images against held-out ones: AUROC and FPR at 95 % TPR of each score, and what the
    stored rule accepts of each, written to ``out_dir/openset.json``. None when the run kept no class out.
    A run without a rule (trained before open-set calibration) is calibrated on the way."""
    run_dir = Path(run_dir)
    rule = OpenSetRule.read(run_dir / OPENSET_FILE)
    heldout = read_heldout(run_dir)
    if rule is not None and not heldout:
        return None
    loaded = load_model(run_dir)
    known_logits = run_logits(loaded, RunData.read(run_dir).split.val, progress)
    heldout_logits = run_logits(loaded, heldout, progress) if heldout else None
    if rule is None:
        calibration = _write_calibration(run_dir, known_logits, heldout_logits)
        rule = OpenSetRule(calibration["score"], calibration["threshold"])
    if heldout_logits is None:
        return None
    report = {
        "score": rule.score,
        "threshold": rule.threshold,
        "known_images": len(known_logits),
        "heldout_images": len(heldout_logits),
        "heldout_classes": sorted({s.label for s in heldout}),
        "known_accepted": float(rule.known(known_logits).float().mean()),
        "heldout_accepted": float(rule.known(heldout_logits).float().mean()),
        "scores": compare_scores(known_logits, heldout_logits),
    }
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / OPENSET_FILE).write_text(json.dumps(report, indent=2))
    return report


def _write_calibration(run_dir: Path, known_logits: torch.Tensor, heldout_logits: torch.Tensor | None) -> dict:
    calibration = calibrate(known_logits, heldout_logits)
    (run_dir / OPENSET_FILE).write_text(json.dumps(calibration, indent=2))
    return calibration

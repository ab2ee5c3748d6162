"""Post-hoc scores of "is this a character the model knows?", all read as *higher means known*.

Each score reads the model's outputs for an image: its logits and its pooled penultimate features (what the
classifier reads), and some are first fitted on the features of the run's training images (a
:class:`FeatureBank`). The detectors come from pytorch-ood; this module only adapts them to one call on
outputs computed once, and flips their sign (pytorch-ood's detectors return outlier scores):

- ``msp``, ``max_logit`` and ``energy`` (logsumexp of the logits): the top softmax probability (Hendrycks &
  Gimpel, 2017, the baseline every OOD benchmark reports), the top logit, or the logits' overall size, which drop
  on unfamiliar inputs. MSP is blind to how large the logits are, only to how much the top one stands out; which
  of the three separates best depends on the run, hence the choice on held-out characters.
- ``knn``: cosine distance to the k-th nearest training feature (Sun et al., 2022), with k = 0.1 % of the training
  images, the paper's own ratio (50 of CIFAR-10's 50,000, 1,000 of ImageNet's 1.28 million), between 1 and 50. A
  small set has a handful of images a character, and a k above that reaches into other characters: with 1 % (k = 5
  on the stand-in's 476 training images) near-OOD AUROC was 0.58-0.70 on the stand-in, fonts and emoji, with the
  nearest image (k = 1) 0.80-0.93, far-away images rejected as well or better (``benchmarks/openset.py``, the
  mean over its draws; README, "Unknown characters").
- ``centred_knn``: the same on features centred on the training features' mean, as SimpleShot (Wang et al., 2019)
  does for nearest-neighbour classification. Pooled post-ReLU activations are all positive and share one large
  mean direction, which dominates their cosine; centred, the cosine compares what sets images apart, and what all
  of them share, which far-away images lack, counts less. Which of the two is better depends on the data: on the
  stand-in centring took near-OOD AUROC / FPR95 from 0.949 / 0.382 to 0.971 / 0.200, on fonts it changed little,
  and on emoji and on the stand-in's unseen drawing styles it let more far-away images through (far AUROC 0.972 to
  0.899 and 0.997 to 0.903; README, "Unknown characters").
- ``scale`` / ``ash``: energy after rescaling (SCALE, Xu et al., 2024) or pruning and rescaling (ASH-S, Djurisic
  et al., 2023) the penultimate activations, at pytorch-ood's default percentile. Both work on the pooled
  activations seen as 1x1 feature maps, where ASH's reference code applies them too.
- ``vim``: energy minus the norm of the feature's residual outside the training features' principal subspace
  (Wang et al., 2022), with half the feature dimensions as the principal subspace.
- ``mahalanobis``: distance to the nearest class mean under the shared class covariance (Lee et al., 2018).
- ``msp_knn``: MSP with a k-NN veto. Logit scores rank new characters of the same show best (near-OOD), while
  k-NN is the one that rejects images unlike any training image (far-OOD: photos, another cartoon set), as OpenOOD
  finds too; each is weak where the other is strong. An image whose k-NN score is below what all but
  ``KNN_VETO_SHARE`` of the training images reach (each scored against the others) is ranked below every other
  image (MSP - 1); the rest keep their MSP. On the stand-in, fonts and emoji the veto moves MSP's near-OOD AUROC
  by under 0.01, and on the stand-in it takes far-away photos and noise from 0.98 to 0.999, emoji drawings from
  0.97 to 0.996 (README, "Unknown characters").
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..storage import write_atomic

KNN_SHARE = 0.001
KNN_MAX_K = 50
KNN_VETO_SHARE = 0.01
"""Share of the training images the k-NN veto would reject, each scored against the others: the veto is a bound
on the training features' spread, not a second threshold to tune."""
KNN_VETO_SAMPLE = 2_000
"""Training images the veto's floor is measured on: 20 of them below it."""
BANK_MAX_IMAGES = 20_000
"""Training images whose features a run keeps (a stratified sample when there are more): enough for the
nearest-neighbour and class-statistics scores, and at most ~100 MB for a 2048-feature backbone in float16."""


@dataclass(frozen=True)
class FeatureBank:
    """Features of (a sample of) a run's training images, with the classifier that reads them: what the scores
    that need fitting are fitted on. Kept in the run (``RUN/features.pt``) so that serving needs no data."""

    features: torch.Tensor
    """N×D float32."""
    labels: torch.Tensor
    """N long, indices into ``classes``."""
    classes: list[str]
    head_weight: torch.Tensor
    """C×D: the classifier's weight, for the scores that recompute logits from changed features."""
    head_bias: torch.Tensor

    def write(self, path: Path) -> None:
        payload = {"features": self.features.half(), "labels": self.labels, "classes": json.dumps(self.classes),
                   "head_weight": self.head_weight, "head_bias": self.head_bias}
        write_atomic(path, lambda handle: torch.save(payload, handle))

    @classmethod
    def read(cls, path: str | Path) -> FeatureBank:
        stored = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(stored["features"].float(), stored["labels"], json.loads(stored["classes"]),
                   stored["head_weight"], stored["head_bias"])

    def head(self) -> nn.Module:
        """The classifier as a module taking N×D×1×1 activations (pytorch-ood's feature-map detectors)."""
        linear = nn.Linear(self.head_weight.shape[1], self.head_weight.shape[0])
        linear.weight.data.copy_(self.head_weight)
        linear.bias.data.copy_(self.head_bias)
        return nn.Sequential(nn.Flatten(), linear).eval()


Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(features N×D, logits N×C) -> N scores, higher means known."""


def _logit_score(detector) -> Callable[[FeatureBank | None], Score]:
    return lambda bank: (lambda features, logits: -detector.score(logits))


def _feature_map_score(make_detector) -> Callable[[FeatureBank | None], Score]:
    def fit(bank: FeatureBank | None) -> Score:
        detector = make_detector(backbone=None, head=_require(bank).head())
        return lambda features, logits: -detector.predict_feature_maps(features[:, :, None, None].float())
    return fit


def _fitted_feature_score(make_detector) -> Callable[[FeatureBank | None], Score]:
    def fit(bank: FeatureBank | None) -> Score:
        bank = _require(bank)
        detector = make_detector(bank).fit_features(bank.features, bank.labels)
        return lambda features, logits: -detector.predict_features(features.float()).float()
    return fit


@dataclass(frozen=True)
class _Centred:
    """A pytorch-ood features detector fitted and applied on features minus ``centre``."""

    detector: object
    centre: torch.Tensor

    def fit_features(self, features: torch.Tensor, labels: torch.Tensor) -> _Centred:
        self.detector.fit_features(features - self.centre, labels)
        return self

    def predict_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.detector.predict_features(features - self.centre)


def _knn(bank: FeatureBank, extra_neighbours: int = 0):
    from pytorch_ood.detector import KNN

    k = max(1, min(KNN_MAX_K, round(KNN_SHARE * len(bank.features))))
    return KNN(None, k=k + extra_neighbours, algorithm="brute")


def _centred_knn(bank: FeatureBank) -> _Centred:
    return _Centred(_knn(bank), bank.features.mean(0))


def _msp_with_knn_veto(bank: FeatureBank | None) -> Score:
    from pytorch_ood.detector import MaxSoftmax

    bank = _require(bank)
    msp, knn = _logit_score(MaxSoftmax)(bank), _fitted_feature_score(_knn)(bank)
    # Training images scored against the others (their own feature is their nearest neighbour, hence one more);
    # a fixed sample of them, so that a 20,000-image bank is fitted in seconds when a predictor starts.
    sample = torch.randperm(len(bank.features), generator=torch.Generator().manual_seed(0))[:KNN_VETO_SAMPLE]
    spread = (_knn(bank, extra_neighbours=1).fit_features(bank.features, bank.labels)
              .predict_features(bank.features[sample]))
    floor = -torch.quantile(spread.double(), 1 - KNN_VETO_SHARE).item()

    def score(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        confidence = msp(features, logits)
        return torch.where(knn(features, logits) >= floor, confidence, confidence - 1)
    return score


def _vim(bank: FeatureBank):
    from pytorch_ood.detector import ViM

    return ViM(None, d=bank.features.shape[1] // 2, w=bank.head_weight, b=bank.head_bias)


def _mahalanobis(bank: FeatureBank):
    from pytorch_ood.detector import Mahalanobis

    return Mahalanobis(None)


def _require(bank: FeatureBank | None) -> FeatureBank:
    if bank is None:
        raise ValueError("this score is fitted on the run's training features (RUN/features.pt), which the run "
                         "lacks: run `simpsons evaluate --run RUN` to compute them")
    return bank


def _detectors():
    from pytorch_ood.detector import ASH, SCALE, EnergyBased, MaxLogit, MaxSoftmax

    return {
        "msp": _logit_score(MaxSoftmax),
        "max_logit": _logit_score(MaxLogit),
        "energy": _logit_score(EnergyBased),
        "knn": _fitted_feature_score(_knn),
        "centred_knn": _fitted_feature_score(_centred_knn),
        "scale": _feature_map_score(SCALE),
        "ash": _feature_map_score(ASH),
        "vim": _fitted_feature_score(_vim),
        "mahalanobis": _fitted_feature_score(_mahalanobis),
        "msp_knn": _msp_with_knn_veto,
    }


SCORE_NAMES = ("msp", "max_logit", "energy", "knn", "centred_knn", "scale", "ash", "vim", "mahalanobis", "msp_knn")
LOGIT_SCORES = ("msp", "max_logit", "energy")
"""The scores that need nothing but the logits (no feature bank)."""


def fit_score(name: str, bank: FeatureBank | None) -> Score:
    """The score ``name``, fitted on ``bank`` when it needs fitting."""
    if name not in SCORE_NAMES:
        raise ValueError(f"unknown open-set score {name!r}: use one of {', '.join(SCORE_NAMES)}")
    return _detectors()[name](bank)


def fit_scores(bank: FeatureBank | None) -> dict[str, Score]:
    """Every score that ``bank`` allows (only the logit scores without one). A score whose fit fails numerically
    on this bank is left out with a warning naming it, and the rule is chosen among the others: with far fewer
    training images than feature dimensions (a dozen images, 1,280 features) ViM's float32 eigendecomposition can
    fail to converge, and that must not cost a finished run its evaluation."""
    scores = {}
    for name in SCORE_NAMES if bank is not None else LOGIT_SCORES:
        try:
            scores[name] = fit_score(name, bank)
        except torch.linalg.LinAlgError as error:
            warnings.warn(f"open-set score {name!r} is left out: it cannot be fitted on the features of "
                          f"{len(bank.features)} training images ({error})", stacklevel=2)
    return scores

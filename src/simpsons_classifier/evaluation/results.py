"""What an evaluation finds, as typed objects: computed once, then written to files, printed, or put in a report.

``EvalResult`` is what ``metrics.json`` holds; ``OpenSetFigures`` (``eval/openset.json``) how well the run's
unknown-character rule and every candidate score separate known validation images from unknown ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..storage import write_json_atomic
from .uncertainty import share_interval


@dataclass(frozen=True)
class Separation:
    """How well a score tells known images (the positives) from unknown ones."""

    auroc: float
    fpr_at_95_tpr: float
    """Share of unknown images accepted when the threshold accepts 95 % of the known ones."""


def _separations(values: dict) -> dict[str, Separation]:
    return {name: Separation(**figures) for name, figures in values.items()}


@dataclass(frozen=True)
class OpenSetFigures:
    chosen: str
    """The score the run's rule uses (chosen on held-out classes other than ``near_classes``)."""
    threshold: float
    known_images: int
    near_images: int
    near_classes: list[str]
    """Held-out characters the near figures are reported on."""
    far_images: dict[str, int]
    """Images of each far-away set (photos, noise, folders given to ``simpsons evaluate --far``)."""
    known_accepted: float
    """Share of known validation images the rule accepts."""
    near_accepted: float | None
    """Share of held-out characters' images the rule lets through."""
    far_accepted: float | None
    near: dict[str, Separation]
    """Every candidate score: ``{name: {"auroc": ..., "fpr_at_95_tpr": ...}}``."""
    far: dict[str, Separation]
    """The same against all far-away images together."""
    far_by_set: dict[str, dict[str, Separation]] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> OpenSetFigures:
        return cls(**{**values, "near": _separations(values["near"]), "far": _separations(values["far"]),
                      "far_by_set": {name: _separations(v) for name, v in values.get("far_by_set", {}).items()}})


@dataclass(frozen=True)
class EvalResult:
    top1: float
    top5: float
    loss: float
    num_images: int
    num_classes: int
    macro_f1: float
    balanced_accuracy: float
    num_skipped: int = 0
    tta: bool = False
    robustness_top1: float | None = None
    """Top-1 on the same images pasted onto backgrounds never used in training."""
    per_group_top1: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Source group -> (images, top-1), when file names carry a source (``SOURCE__i.png``)."""
    openset: OpenSetFigures | None = None

    @property
    def top1_interval(self) -> tuple[float, float]:
        """Where top-1 could as well be on another draw of as many images (95 %, Wilson)."""
        return share_interval(self.top1, self.num_images)

    def group_interval(self, group: str) -> tuple[float, float]:
        """The same for one source group's top-1."""
        images, top1 = self.per_group_top1[group]
        return share_interval(top1, images)

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> EvalResult:
        values = json.loads(Path(path).read_text())
        openset = values.pop("openset", None)
        groups = {g: (int(n), float(a)) for g, (n, a) in values.pop("per_group_top1", {}).items()}
        return cls(**values, per_group_top1=groups, openset=OpenSetFigures.from_dict(openset) if openset else None)

"""What an evaluation finds, as typed objects: computed once, then written to files, printed, or put in a report.

``EvalResult`` is what ``metrics.json`` holds; ``OpenSetFigures`` how well the run's unknown-character rule
separates known validation images from the held-out classes' images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..storage import write_json_atomic


@dataclass(frozen=True)
class OpenSetFigures:
    score: str
    threshold: float
    known_images: int
    heldout_images: int
    heldout_classes: list[str]
    known_accepted: float
    """Share of known validation images the stored rule accepts."""
    heldout_accepted: float
    """Share of held-out (unknown) images the stored rule lets through."""
    scores: dict[str, dict[str, float]]
    """Every candidate score: ``{name: {"auroc": ..., "fpr_at_95_tpr": ...}}``."""

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


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

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> EvalResult:
        values = json.loads(Path(path).read_text())
        openset = values.pop("openset", None)
        groups = {g: (int(n), float(a)) for g, (n, a) in values.pop("per_group_top1", {}).items()}
        return cls(**values, per_group_top1=groups, openset=OpenSetFigures(**openset) if openset else None)

"""What scoring a detector finds (:func:`~.evaluate.evaluate_detector`), as the files and pages read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

WORST_CLASSES = 5


@dataclass
class BoxFates:
    """What became of each true box at the reporting score (``predictor.DEFAULT_MIN_SCORE``) and IoU 0.5."""

    found: int = 0
    wrong_name: int = 0
    missed: int = 0
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    """(true character, name given, count), most frequent first."""


@dataclass
class DetectionEvaluation:
    map: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    per_class_ap: dict[str, float]
    """COCO AP (IoU 0.5:0.95) of each character present in the held-out scenes."""
    per_class_ap50: dict[str, float]
    num_scenes: int
    num_boxes: int
    tags_map: float
    """Scene tags: mean over characters of the average precision of "is this character in the frame"."""
    tags_precision: float
    tags_recall: float
    fates: BoxFates

    def worst_classes(self, count: int = WORST_CLASSES) -> list[tuple[str, float]]:
        return sorted(self.per_class_ap.items(), key=lambda item: item[1])[:count]

    def to_dict(self) -> dict:
        return asdict(self)

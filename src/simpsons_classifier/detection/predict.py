"""Detection over files and folders: one result per file, a file that cannot be read gets its reason and the
others go on; optionally each image is written back with its boxes drawn."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from ..data.images import UnreadableImage, load_rgb
from ..inference.files import find_files
from ..storage import make_folder
from .pictures import draw_detections, save_png
from .predictor import DEFAULT_MIN_SCORE, Detection, DetectionPredictor


@dataclass(frozen=True)
class FileDetections:
    path: str
    detections: list[Detection] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        found = {"path": self.path, "detections": [d.to_dict() for d in self.detections]}
        return found | ({"error": self.error} if self.error else {})


def detect_files(run_dir, paths: list[str], min_score: float | None = None, draw_dir: str | None = None,
                 progress: bool = True) -> list[FileDetections]:
    min_score = DEFAULT_MIN_SCORE if min_score is None else min_score
    if not 0 <= min_score <= 1:
        raise ValueError(f"--min-score {min_score} must be in [0, 1]")
    files = find_files(paths)
    if not files:
        raise FileNotFoundError(f"no files in {' '.join(map(str, paths))}")
    predictor = DetectionPredictor.from_run(run_dir)
    if draw_dir is not None:
        make_folder(draw_dir)
    results = []
    for path in tqdm(files, desc="detecting", unit="img", disable=not progress or len(files) < 2):
        try:
            image = load_rgb(path)
        except UnreadableImage as error:
            results.append(FileDetections(str(path), error=f"not a readable image: {error}"))
            continue
        except FileNotFoundError:
            results.append(FileDetections(str(path), error="does not exist"))
            continue
        found = predictor.detect([image], min_score)[0]
        results.append(FileDetections(str(path), found))
        if draw_dir is not None:
            boxes = torch.tensor([d.box for d in found]).reshape(-1, 4)
            labels = [predictor.classes.index(d.label) for d in found]
            drawn = draw_detections(F.pil_to_tensor(image), boxes, labels, [d.score for d in found], predictor.classes)
            save_png(drawn, Path(draw_dir) / f"{path.stem}.png")
    return results

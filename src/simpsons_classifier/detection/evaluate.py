"""``simpsons detect evaluate``: the detector on held-out scenes, scored as COCO scores detectors.

Box scores come from torchmetrics' ``MeanAveragePrecision`` on pycocotools (COCO's own evaluation code): mAP over
IoU 0.5:0.95, mAP at IoU 0.5, per class, and by object size. Scene tags ("who is in this frame") are the
multi-label reading of the same detections: a character's tag score is its best box's score. On top, each true
box is followed to what became of it (found, named wrongly, missed), which says where the detector fails.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch.utils.data import DataLoader
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou
from tqdm import tqdm

from ..data.run_data import RunData
from ..run_dir import RunDir
from ..storage import check_writable, write_json_atomic
from ..tables import write_rows
from .page import write_detection_page
from .pictures import draw_scene_grid
from .predictor import DEFAULT_MIN_SCORE, DetectionPredictor
from .results import BoxFates, DetectionEvaluation
from .scenes import collate_scenes
from .train import held_out_scenes, scene_sets

MATCH_IOU = 0.5
NAMES_PER_BOX_SCORED = 3
"""Average precision scores each box under its three most probable names (each scored finder x namer), as a
per-class detector proposes a box for every class that scores: a second-guess name costs the first nothing."""
PICTURED_SCENES = 12


def evaluate_detector(run_dir, progress: bool = True) -> DetectionEvaluation:
    """Score ``run_dir``'s detector on its held-out scenes and write ``RUN/eval/detection.json``, the per-class
    table, a picture of the first scenes and the detector's page."""
    run = RunDir(run_dir)
    predictor = DetectionPredictor.from_run(run)
    eval_dir = run.eval_dir().make()
    check_writable(eval_dir.path)
    scenes = held_out_scenes(predictor.config, scene_sets(predictor.config, RunData.read(run)))
    loader = DataLoader(scenes, batch_size=predictor.config.batch_size, collate_fn=collate_scenes)
    outputs, targets, pictured = [], [], []
    for images, batch_targets in tqdm(loader, desc="held-out scenes", leave=False, disable=not progress):
        batch_outputs = predictor.raw(images, names_per_box=NAMES_PER_BOX_SCORED)
        outputs += batch_outputs
        targets += batch_targets
        pictured += images[: max(0, PICTURED_SCENES - len(pictured))]
    evaluation = score_detections(outputs, targets, predictor.classes)
    write_json_atomic(eval_dir.detection, evaluation.to_dict())
    write_rows(eval_dir.detection_per_class, ("class", "ap", "ap50"),
               [(name, f"{ap:.4f}", f"{evaluation.per_class_ap50[name]:.4f}")
                for name, ap in sorted(evaluation.per_class_ap.items(), key=lambda item: item[1])])
    draw_scene_grid(pictured, outputs[: len(pictured)], targets[: len(pictured)], predictor.classes,
                    DEFAULT_MIN_SCORE, eval_dir.detections)
    write_detection_page(run, evaluation)
    return evaluation


def score_detections(outputs: list[dict], targets: list[dict], classes: list[str]) -> DetectionEvaluation:
    """The scores of torchvision-style ``outputs`` (boxes, scores, labels) against ``targets`` (boxes, labels)."""
    coco = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools")
    coco.update(outputs, targets)
    overall = coco.compute()
    at_half = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, iou_thresholds=[MATCH_IOU],
                                   backend="pycocotools")
    at_half.update(outputs, targets)
    half = at_half.compute()
    present = {int(label) for target in targets for label in target["labels"]}
    scored = [int(c) for c in overall["classes"].flatten()]  # classes in the targets or the detections
    tags = _tag_scores(outputs, targets, len(classes))
    return DetectionEvaluation(
        map=float(overall["map"]), map50=float(overall["map_50"]), map75=float(overall["map_75"]),
        map_small=float(overall["map_small"]), map_medium=float(overall["map_medium"]),
        map_large=float(overall["map_large"]),
        per_class_ap=_per_class(overall, scored, present, classes),
        per_class_ap50=_per_class(half, scored, present, classes),
        num_scenes=len(targets), num_boxes=sum(len(t["labels"]) for t in targets),
        tags_map=tags[0], tags_precision=tags[1], tags_recall=tags[2],
        fates=_box_fates(outputs, targets, classes),
    )


def _per_class(scores: dict, scored: list[int], present: set[int], classes: list[str]) -> dict[str, float]:
    """torchmetrics' per-class AP of the characters in the targets (it also lists classes only detected)."""
    return {classes[c]: float(ap) for c, ap in zip(scored, scores["map_per_class"].flatten()) if c in present}


def _tag_scores(outputs: list[dict], targets: list[dict], num_classes: int) -> tuple[float, float, float]:
    """Scene tags' mean average precision over the characters present, and micro precision / recall of the tags
    scoring at least ``DEFAULT_MIN_SCORE``."""
    truth = np.zeros((len(targets), num_classes), bool)
    scores = np.zeros((len(targets), num_classes))
    for i, (output, target) in enumerate(zip(outputs, targets)):
        truth[i, target["labels"].numpy()] = True
        for label, score in zip(output["labels"].tolist(), output["scores"].tolist()):
            scores[i, label] = max(scores[i, label], score)
    present = truth.any(axis=0)
    tags_map = float(average_precision_score(truth[:, present], scores[:, present], average="macro"))
    said = scores >= DEFAULT_MIN_SCORE
    precision = float((said & truth).sum() / max(said.sum(), 1))
    recall = float((said & truth).sum() / max(truth.sum(), 1))
    return tags_map, precision, recall


def _box_fates(outputs: list[dict], targets: list[dict], classes: list[str]) -> BoxFates:
    fates, confusions = BoxFates(), Counter()
    for output, target in zip(outputs, targets):
        kept = output["scores"] >= DEFAULT_MIN_SCORE
        boxes, labels = output["boxes"][kept], output["labels"][kept]
        if len(target["boxes"]) == 0:
            continue
        if len(boxes) == 0:
            fates.missed += len(target["boxes"])
            continue
        overlaps = box_iou(target["boxes"], boxes)
        for truth_index, true_label in enumerate(target["labels"].tolist()):
            same = overlaps[truth_index] >= MATCH_IOU
            if (same & (labels == true_label)).any():
                fates.found += 1
            elif same.any():
                fates.wrong_name += 1
                given = int(labels[torch.argmax(overlaps[truth_index])])
                confusions[(classes[true_label], classes[given])] += 1
            else:
                fates.missed += 1
    fates.confusions = [(truth, given, count) for (truth, given), count in confusions.most_common()]
    return fates

"""The floor a fine-tuned model must beat: a logistic regression on frozen ImageNet features, same split.

    python benchmarks/linear_probe.py --run runs/demo [--backbone efficientnet_lite0]

Uses the run's split (split.csv) and the same probe that ``head_init: probe`` fits (on each training image's features
and its mirror image's), and prints top-1 / top-5 on the validation images overall and per drawing source, beside
the probe fitted on the training images alone.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader

from simpsons_classifier.augment import build_eval_transform, mirrored
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.evaluation.report import per_group_accuracy
from simpsons_classifier.models import create_model, data_config
from simpsons_classifier.training.probe import PROBE_C, PROBE_MAX_ITER, pre_logit_features


class FrozenFeatures(NamedTuple):
    """The split's images through the frozen ImageNet backbone, up to the layer the classifier reads."""

    train: np.ndarray
    train_mirrored: np.ndarray
    """The training images mirrored left-right, row for row: the probe is fitted on both, as training flips."""
    train_classes: np.ndarray
    val: np.ndarray
    val_classes: np.ndarray


def frozen_features(data: RunData, backbone: str = "efficientnet_lite0", image_size: int = 224,
                    progress: bool = True) -> FrozenFeatures:
    """The split's images, through the eval transform, in the frozen ImageNet backbone's features."""
    model = create_model(backbone, len(data.classes), "imagenet").eval()
    norm = data_config(model)
    plain = build_eval_transform(image_size, norm["mean"], norm["std"])

    def features(samples, transform):
        dataset = ImageDataset(samples, data.classes, transform, decode_size=image_size)
        return pre_logit_features(model, DataLoader(dataset, batch_size=64, num_workers=2), torch.device("cpu"),
                                  progress)

    (train, classes), (train_mirrored, _) = (features(data.split.train, t) for t in (plain, mirrored(plain)))
    return FrozenFeatures(train, train_mirrored, classes, *features(data.split.val, plain))


def fit_probe(features: np.ndarray, mirrored_features: np.ndarray | None, classes: np.ndarray) -> LogisticRegression:
    """The logistic regression ``head_init: probe`` fits: on each image's features and its mirror image's (on the
    images alone when ``mirrored_features`` is None)."""
    if mirrored_features is not None:
        features, classes = np.vstack([features, mirrored_features]), np.concatenate([classes, classes])
    return LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER).fit(features, classes)


def top5(probe: LogisticRegression, features: np.ndarray) -> np.ndarray:
    """The five best classes of each row (N×5 class indices, best first)."""
    return probe.classes_[np.argsort(-probe.decision_function(features), axis=1)[:, :5]]


def linear_probe(data: RunData, backbone: str = "efficientnet_lite0", image_size: int = 224,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fit the probe on the split's training images; returns the five best classes of each validation image
    (N×5 class indices, best first) and the true classes (N)."""
    found = frozen_features(data, backbone, image_size, progress)
    return top5(fit_probe(found.train, found.train_mirrored, found.train_classes), found.val), found.val_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder (its split is used)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()

    data = RunData.read(args.run)
    found = frozen_features(data, args.backbone, args.image_size)
    print(f"linear probe ({args.backbone}, {len(data.split.train)} train / {len(found.val_classes)} val images)")
    for name, mirrored_features in (("each image and its mirror image (head_init: probe)", found.train_mirrored),
                                    ("the images alone", None)):
        best = top5(fit_probe(found.train, mirrored_features, found.train_classes), found.val)
        correct = best[:, 0] == found.val_classes
        print(f"fitted on {name}: top-1 {100 * correct.mean():.1f}%  "
              f"top-5 {100 * (best == found.val_classes[:, None]).any(1).mean():.1f}%")
        for group, (images, top1) in per_group_accuracy([s.path for s in data.split.val], correct).items():
            print(f"  {group:<14} {images:>5} images  top-1 {100 * top1:.1f}%")


if __name__ == "__main__":
    main()

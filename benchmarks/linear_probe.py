"""The floor a fine-tuned model must beat: a logistic regression on frozen ImageNet features, same split.

    python benchmarks/linear_probe.py --run runs/demo [--backbone efficientnet_lite0]

Uses the run's split (split.csv) and the same probe that ``head_init: probe`` fits, and prints top-1 / top-5 on
the validation images overall and per drawing source.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader

from simpsons_classifier.augment import build_eval_transform
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.evaluation.report import per_group_accuracy
from simpsons_classifier.models import create_model, data_config
from simpsons_classifier.training.probe import PROBE_C, PROBE_MAX_ITER, pre_logit_features


def frozen_features(data: RunData, backbone: str = "efficientnet_lite0", image_size: int = 224,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training features, their classes, validation features, their classes) of the split's images, from the
    ImageNet backbone's layer the classifier reads, through the eval transform."""
    model = create_model(backbone, len(data.classes), "imagenet").eval()
    norm = data_config(model)
    transform = build_eval_transform(image_size, norm["mean"], norm["std"])

    def features(samples):
        dataset = ImageDataset(samples, data.classes, transform, decode_size=image_size)
        return pre_logit_features(model, DataLoader(dataset, batch_size=64, num_workers=2), torch.device("cpu"),
                                  progress)

    return (*features(data.split.train), *features(data.split.val))


def fit_probe(features: np.ndarray, classes: np.ndarray) -> LogisticRegression:
    """The logistic regression ``head_init: probe`` fits."""
    return LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER).fit(features, classes)


def linear_probe(data: RunData, backbone: str = "efficientnet_lite0", image_size: int = 224,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fit the probe on the split's training images; returns the five best classes of each validation image
    (N×5 class indices, best first) and the true classes (N)."""
    train_x, train_y, val_x, val_y = frozen_features(data, backbone, image_size, progress)
    probe = fit_probe(train_x, train_y)
    scores = probe.decision_function(val_x)
    return probe.classes_[np.argsort(-scores, axis=1)[:, :5]], val_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder (its split is used)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()

    data = RunData.read(args.run)
    top5, val_y = linear_probe(data, args.backbone, args.image_size)
    correct = top5[:, 0] == val_y
    print(f"linear probe ({args.backbone}, {len(data.split.train)} train / {len(val_y)} val images): "
          f"top-1 {100 * correct.mean():.1f}%  top-5 {100 * (top5 == val_y[:, None]).any(1).mean():.1f}%")
    for group, (images, top1) in per_group_accuracy([s.path for s in data.split.val], correct).items():
        print(f"  {group:<14} {images:>5} images  top-1 {100 * top1:.1f}%")


if __name__ == "__main__":
    main()

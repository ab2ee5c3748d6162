"""Training augmentation: the per-sample train/eval transforms, background mixing and batch MixUp/CutMix."""

from simpsons_classifier.augment.background import BackgroundMixing, load_backgrounds
from simpsons_classifier.augment.batch import build_batch_mixer
from simpsons_classifier.augment.reference import build_eval_transform, build_train_transform

__all__ = [
    "BackgroundMixing",
    "build_batch_mixer",
    "build_eval_transform",
    "build_train_transform",
    "load_backgrounds",
]

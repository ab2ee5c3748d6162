"""Training augmentation: the per-sample train/eval transforms (fused OpenCV engine or the torchvision reference),
the optional GPU path, background mixing and batch MixUp/CutMix."""

from simpsons_classifier.augment.background import BackgroundMixing, load_backgrounds
from simpsons_classifier.augment.batch import build_batch_mixer
from simpsons_classifier.augment.engines import ENGINES, build_train_transform
from simpsons_classifier.augment.fused import Normalise, collate
from simpsons_classifier.augment.gpu import build_device_augment
from simpsons_classifier.augment.torchvision_engine import build_eval_transform

__all__ = [
    "ENGINES",
    "BackgroundMixing",
    "Normalise",
    "build_batch_mixer",
    "build_device_augment",
    "build_eval_transform",
    "build_train_transform",
    "collate",
    "load_backgrounds",
]

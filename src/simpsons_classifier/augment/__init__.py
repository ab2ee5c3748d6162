"""Augmentation: the training recipe (:mod:`.recipe`) as a per-sample train transform from one of the engines
(:mod:`.engines`: the fused OpenCV engine or the torchvision reference), the optional GPU path, background mixing,
batch MixUp/CutMix, the batch pipeline between the loader and the model (:mod:`.pipeline`), and the eval
transform."""

from simpsons_classifier.augment.background import BackgroundMixing, load_backgrounds
from simpsons_classifier.augment.batch import build_batch_mixer
from simpsons_classifier.augment.engines import ENGINES, build_train_transform
from simpsons_classifier.augment.eval_transform import build_eval_transform, mirrored
from simpsons_classifier.augment.fused import Normalise, collate
from simpsons_classifier.augment.gpu import build_device_augment
from simpsons_classifier.augment.pipeline import BatchPipeline

__all__ = [
    "ENGINES",
    "BackgroundMixing",
    "BatchPipeline",
    "Normalise",
    "build_batch_mixer",
    "build_device_augment",
    "build_eval_transform",
    "build_train_transform",
    "collate",
    "load_backgrounds",
    "mirrored",
]

"""How much detail images are compared at when they are clustered: as they are, or shrunk first.

A character drawn sharp and large (key art, a close-up) and the same character drawn small (a sprite, a character
far off in a frame) share their shapes and colours, not their fine detail; features of the full images set them
apart by that detail. Shrinking every image to the same few dozen pixels before its features are taken leaves only
what they share. Whether that helps depends on the dataset, so the level is chosen where the answer is known: the
known characters are split in halves and one half is clustered as if new beside the other (as
:func:`~.clustering.merge_thresholds` does), at each level, and the least detailed level that recovers them within
one standard error of the best is kept (:func:`choose_detail` says why the least).

On ``benchmarks/discover.py`` (README, "New characters") the choice is 48 px on all three datasets, and clustering
accuracy (All, the estimated count, in the penultimate features alone) rises from 0.603 to 0.655 on the stand-in,
whose drawing styles differ most in size, from 0.626 to 0.649 on fonts and from 0.597 to 0.614 on emoji. The level
is chosen in the features the images are clustered by (``models.discovery_embedding``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from torch import nn
from tqdm import tqdm

from ..augment.eval_transform import mirrored
from ..data.scan import Sample
from ..data.split import source_group
from ..evaluation.run_model import eval_transform, sample_embeddings
from ..models import discovery_embedding
from ..training import LoadedModel
from ..training.anchored_kmeans import mirror_averaged, semi_supervised_kmeans
from .clustering import clustering_accuracy, known_halvings, pretend_new

DETAIL_LEVELS: tuple[int | None, ...] = (None, 96, 48)
"""Longest sides, in pixels, that images are shrunk to (never enlarged) before their features are taken; None:
as they are. 48 px still shows a character's shape and colours; below it the smallest sprites lose them."""
DETAIL_SPLITS = 10
"""Halvings of the known characters (each half taking its turn as the pretend-new one) a level's score averages
over: with the 3 of :data:`~.clustering.MERGE_SPLITS` the score moves by a few hundredths with the halvings drawn,
as much as the levels differ on the stand-in."""
DETAIL_LABELLED_PER_CLASS = 20
"""Training images per known character the choice is made on, so it costs the same on any training set."""


class Shrunk:
    """An image transform that first shrinks an image whose longer side exceeds ``longest_side`` to that side
    (aspect kept, PIL's antialiased bilinear filter), then applies ``transform``. A class, not a closure: it
    pickles to data-loader workers."""

    def __init__(self, transform: Callable[[PIL.Image.Image], torch.Tensor], longest_side: int | None) -> None:
        self.transform, self.longest_side = transform, longest_side

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        if self.longest_side is not None and max(image.size) > self.longest_side:
            scale = self.longest_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, PIL.Image.BILINEAR)
        return self.transform(image)


def features_at(loaded: LoadedModel, samples: Sequence[Sample], longest_side: int | None, progress: bool = False,
                desc: str = "features", embedding: Callable[[nn.Module], nn.Module] = discovery_embedding
                ) -> np.ndarray:
    """Mirror-averaged ``embedding`` (by default what new characters are clustered by) of ``samples`` shrunk to
    ``longest_side``."""
    transform = Shrunk(eval_transform(loaded), longest_side)
    plain, flipped = (sample_embeddings(loaded, list(samples), embedding, t, progress=progress, desc=desc).numpy()
                      for t in (transform, mirrored(transform)))
    return mirror_averaged(plain, flipped)


def detail_accuracies(labelled: np.ndarray, labels: np.ndarray, known: int, seed: int = 0) -> np.ndarray:
    """Clustering accuracy (All) of the pretend-new half of the known characters, clustered with their true number
    beside the other half, for each of the halvings :func:`~.clustering.known_halvings` draws."""
    accuracies = []
    for anchor, pretend in known_halvings(known, seed, DETAIL_SPLITS):
        anchors, anchor_labels, points, truth = pretend_new(labelled, labels, anchor, pretend)
        found = semi_supervised_kmeans(anchors, anchor_labels, points, len(anchor), len(pretend), seed)
        accuracies.append(clustering_accuracy(truth, found.assignments, np.zeros(len(points), dtype=bool)).all)
    return np.array(accuracies)


@dataclass(frozen=True)
class Detail:
    """The level images are clustered at, and each level's mean accuracy on the known characters with its
    standard error."""

    longest_side: int | None
    scores: dict[int | None, float]
    errors: dict[int | None, float]

    def describe(self) -> str:
        """``shrunk to 48 px`` or ``as they are``."""
        return "as they are" if self.longest_side is None else f"shrunk to {self.longest_side} px"


AS_THEY_ARE = Detail(None, {}, {})
"""The images compared as they are, with nothing learnt on the known characters."""


def choose_detail(accuracies: dict[int | None, np.ndarray]) -> Detail:
    """Of the levels (ordered from the most detail to the least) whose mean accuracy is within one standard error
    of the best level's, the one of least detail.

    Why the least and not the best: the known characters' training images are often small already (the stand-in's
    sprites), so shrinking them changes little and the levels score alike there, while on the images to cluster
    it matters. Wherever the known characters cannot tell the levels apart, the least detail clustered the new
    characters better on all three datasets of ``benchmarks/discover.py`` (README, "New characters"); where
    shrinking does harm the known characters, they show it and the images keep their detail."""
    scores = {level: float(np.mean(a)) for level, a in accuracies.items()}
    errors = {level: float(np.std(a, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
              for level, a in accuracies.items()}
    best = max(scores, key=scores.get)
    close = [level for level in scores if scores[level] >= scores[best] - errors[best]]
    return Detail(close[-1], scores, errors)


def per_class_sample(samples: Sequence[Sample], per_class: int = DETAIL_LABELLED_PER_CLASS, seed: int = 0
                     ) -> list[Sample]:
    """At most ``per_class`` of each class's samples, drawn at random, in the order given."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_class.setdefault(sample.label, []).append(index)
    keep = sorted(i for indices in by_class.values() for i in rng.permutation(indices)[:per_class])
    return [samples[i] for i in keep]


@dataclass(frozen=True)
class KnownFeatures:
    """The known characters' images as new ones are compared with them."""

    detail: Detail
    features: np.ndarray
    labels: np.ndarray
    """Class indices into the run's classes."""
    sources: np.ndarray | None
    """Each image's drawing source (``data.split.source_group``); None where the images' names are not known."""


def detail_features(loaded: LoadedModel, training: Sequence[Sample], seed: int = 0, progress: bool = False
                    ) -> KnownFeatures:
    """The chosen detail and the features of a per-class sample of ``training`` at it, their class indices into
    ``loaded.classes`` and drawing sources; with fewer than four known characters, whose halves are too small to
    learn from, the images as they are."""
    sample = per_class_sample(training, seed=seed)
    labels = np.array([loaded.classes.index(s.label) for s in sample])
    sources = np.array([source_group(s.path) for s in sample])
    present, dense = np.unique(labels, return_inverse=True)
    if len(present) < 4:
        return KnownFeatures(AS_THEY_ARE, features_at(loaded, sample, None, progress, desc="known characters"),
                             labels, sources)
    by_level = {level: features_at(loaded, sample, level, progress,
                                   desc=f"known characters, {Detail(level, {}, {}).describe()}")
                for level in tqdm(DETAIL_LEVELS, desc="choosing the detail to compare", leave=False,
                                  disable=not progress)}
    detail = choose_detail({level: detail_accuracies(features, dense, len(present), seed)
                            for level, features in by_level.items()})
    return KnownFeatures(detail, by_level[detail.longest_side], labels, sources)

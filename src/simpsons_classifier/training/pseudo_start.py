"""The semi-supervised start: the probe head fitted again on the labelled images and every unlabelled image the
known-character rule accepts, each under the class the anchored k-means gives it.

With few labels a character, what fine-tuning starts from, and what FixMatch's pseudo-labels (``pseudo_labels.py``)
come from at first, is the probe head (``probe.py``), a logistic regression on the frozen features of 2 or 4 images
a character; on the stand-in and fonts it labels about half to two thirds of the unlabelled images right, and a
pseudo-label is only as good as the head that gives it. The semi-supervised k-means of ``anchored_kmeans.py`` sees
the pool as a whole instead: the unlabelled images are placed in the whitened feature space beside the labelled
ones, each falls to the nearest class, and the images that fall to a class move its centre. It clusters in the
features ``discover`` compares new characters by (``models.discovery_embedding``: the penultimate features beside the
pooled maps of the last two stages, mirror-averaged), which hold a character together across drawing styles better
than the penultimate ones alone.

Every accepted image is used, not only those the probe labels alike: the images the two disagree on are the ones
the probe cannot yet tell apart. Each drawing source named in the file names is moved and scaled to the common mean
and spread first (``anchored_kmeans.source_standardised``), and the k-means runs twice, the whitening learnt again
from the first run's surest images (``WHITENING_SHARE``). On ``benchmarks/semisupervised.py`` (2 and 4 labels a
character) semi-supervised training then closes 55 and 71 % of the gap to full labels on the stand-in, 60 and 70 %
on fonts and 9 and 0 % on emoji; with 30 % of the folder from unknown characters, the known ones gain 21.1 and 8.3
points over labelled-only training on the stand-in (README, "Learning from unlabelled frames, measured").

An unlabelled image the known-character rule rejects (``pseudo_labels.known_threshold``, calibrated on the probe's
validation logits) is never labelled. The trainer keeps the refitted head only where it scores at least the probe on
the validation images, as the best checkpoint would keep the probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..models import PenultimateBesideDiscovery, discovery_embedding
from .anchored_kmeans import clustering_space, mirror_averaged, semi_supervised_kmeans, standardised_by_source
from .probe import fit_head, pre_logit_features
from .pseudo_labels import PseudoLabels


WHITENING_SHARE = 0.5
"""The share of each class's unlabelled images, those nearest its centre after a first clustering, that the
whitening is learnt from again, beside the labelled ones, before the unlabelled images are clustered a second time.

Why: the whitening (``anchored_kmeans.within_class_whitening``) learns how one character's images differ from 2 or
4 labelled images a character, too few to show the ways a character varies across poses and drawing sources; the
images the first clustering places firmly in a class show many more. Those far from their class's centre are left
out, being the ones most often wrong (every image in: the second clustering gave the first's classes back, on each
of the stand-in's eight draws). On ``benchmarks/self_training.py --draws 4``'s frozen features (2 / 4 labels a
character, four draws), the labels are right on 81.5 / 91.3 % of the stand-in's unlabelled images against
79.4 / 89.5 % with the whitening learnt once, 74.8 / 82.8 against 71.8 / 81.0 % of fonts', 82.1 / 89.8 against
78.9 / 88.9 % of emoji's; the probe refitted with them gains 3.5 / 1.0, 1.9 / 2.1 and 2.0 / −0.1 points. Of the
shares tried (a half, 60 and 70 % of each class; 30 to 90 % of all images, whatever their class), half of
each class labels more images right than the whitening learnt once on all three datasets, at 2 and 4 labels."""


def clustered_labels(labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray,
                     sources: np.ndarray | None = None, whitening_share: float = WHITENING_SHARE) -> np.ndarray:
    """The class of each ``unlabelled`` image by the anchored k-means beside ``labelled`` (``labels``: class
    indices; a class without a labelled image is never given), clustered twice: the second time whitened by the
    spread of the labelled images and of the ``whitening_share`` of each class's unlabelled ones the first placed
    nearest its centre (0: the labelled images alone, as the first). ``sources``: the drawing source of each
    labelled image, then of each unlabelled one; each source is moved and scaled to the common mean and spread
    first (:func:`source_standardised`)."""
    if sources is not None:
        labelled, unlabelled = standardised_by_source(labelled, unlabelled, sources)
    present, anchored = np.unique(labels, return_inverse=True)
    labelled_space, unlabelled_space = clustering_space(labelled, anchored, unlabelled)
    clusters = semi_supervised_kmeans(labelled_space, anchored, unlabelled_space, known=len(present), new=0)
    central_classes = np.where(clusters.central(whitening_share), clusters.assignments, -1)
    labelled_space, unlabelled_space = clustering_space(labelled, anchored, unlabelled, central_classes)
    clusters = semi_supervised_kmeans(labelled_space, anchored, unlabelled_space, known=len(present), new=0)
    return present[clusters.assignments]


def _mirror_averaged(embedded: np.ndarray) -> np.ndarray:
    """Each image's features (every image, then every image mirrored: ``probe.probe_images``) averaged with its
    mirror image's."""
    images = len(embedded) // 2
    return mirror_averaged(embedded[:images], embedded[images:])


def fit_pseudo_start(model: nn.Module, labelled: np.ndarray, labels: np.ndarray, labelled_loader: DataLoader,
                     unlabelled_loader: DataLoader, known_at: float, device: torch.device, progress: bool = True,
                     sources: tuple[Sequence[str], Sequence[str]] | None = None) -> PseudoLabels:
    """Fit the probe head again on the labelled images and the unlabelled ones the known-character rule accepts,
    under their :func:`clustered_labels`. ``labelled``, ``labels``: the features and classes ``model``'s head, the
    probe, was fitted on, from ``labelled_loader``; it and ``unlabelled_loader`` give each image then, after all of
    them, each mirrored (``probe.probe_images``). Returns the verdict on the unlabelled images (the first half of
    ``unlabelled_loader``'s); with every one rejected, the head is left as it was. ``sources``: the drawing source
    of each labelled image and of each unlabelled one (in the loaders' order, without the mirror images), which
    :func:`clustered_labels` standardises."""
    classifier = model.get_classifier()
    pool_both, _ = pre_logit_features(model, unlabelled_loader, device, progress, embedding=PenultimateBesideDiscovery)
    pool, pool_clustered = pool_both[:, :classifier.in_features], pool_both[:, classifier.in_features:]
    images, pool_images = len(labels) // 2, len(pool) // 2
    logits = torch.as_tensor(pool[:pool_images]) @ classifier.weight.detach().cpu().T + classifier.bias.detach().cpu()
    known = (logits.max(dim=1).values >= known_at).numpy()
    clustered = np.full(pool_images, -1)
    if known.any():  # with every image rejected the head stays the probe, already fitted on the labelled images
        labelled_clustered, _ = pre_logit_features(model, labelled_loader, device, progress,
                                                   embedding=discovery_embedding)
        known_sources = None if sources is None else np.concatenate([sources[0], np.asarray(sources[1])[known]])
        clustered[known] = clustered_labels(_mirror_averaged(labelled_clustered), labels[:images],
                                            _mirror_averaged(pool_clustered)[known], known_sources)
        fit_head(model, np.vstack([labelled, pool[:pool_images][known], pool[pool_images:][known]]),
                 np.concatenate([labels, clustered[known], clustered[known]]))
    known = torch.as_tensor(known)
    return PseudoLabels(torch.as_tensor(clustered), known, ~known, torch.zeros_like(known))

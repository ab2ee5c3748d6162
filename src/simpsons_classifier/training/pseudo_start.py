"""The semi-supervised start: the probe head fitted again on the labelled images and the unlabelled images that two
different classifiers label alike.

With few labels a character, what fine-tuning starts from, and what FixMatch's pseudo-labels (``pseudo_labels.py``)
come from at first, is the probe head (``probe.py``), a logistic regression on the frozen features of 2 or 4 images
a character; on the stand-in and fonts it labels about half to two thirds of the unlabelled images right, and a
pseudo-label is only as good as the head that gives it. A second classifier that sees the pool differently is the
semi-supervised k-means of ``anchored_kmeans.py``: the unlabelled images are placed in the whitened feature space
beside the labelled ones, each falls to the nearest class, and the images that fall to a class move its centre
(the transductive view the probe lacks). Where the two agree they are right more often than either alone
(co-training's argument; Blum and Mitchell, 1998): they agree on 68 to 87 % of the unlabelled images of the stand-in
and fonts at 2 and 4 labels a character and are right on 65 to 90 % of those, where the probe alone is right on 49
to 79 % of all of them. The probe is then fitted again on the labelled images and those agreed ones, each with its
mirror image as the probe is: on the frozen features that gains 2.4 to 3.6 points (``benchmarks/self_training.py``).

An unlabelled image the known-character rule rejects (``pseudo_labels.known_threshold``, calibrated on the probe's
validation logits) is never labelled; one it accepts but on which the two disagree stays *pending*: FixMatch may
label it later, from the fine-tuned model's weak views. The trainer keeps the refitted head only where it scores at
least the probe on the validation images, as the best checkpoint would keep the probe: on emoji (5 training
images a drawing) the agreed labels are right on 74 to 87 % of the images yet the refit scores lower, and is not
kept (README, "Learning from unlabelled frames", has the runs).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .anchored_kmeans import clustering_space, mirror_averaged, semi_supervised_kmeans
from .probe import fit_head, pre_logit_features
from .pseudo_labels import PseudoLabels


def agreed_labels(labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, probe_labels: np.ndarray
                  ) -> np.ndarray:
    """The class of each ``unlabelled`` image where the anchored k-means beside ``labelled`` (``labels``: class
    indices; the classes without a labelled image are never given) and ``probe_labels`` agree, -1 elsewhere."""
    present, anchored = np.unique(labels, return_inverse=True)
    labelled_space, unlabelled_space = clustering_space(labelled, anchored, unlabelled)
    clusters = semi_supervised_kmeans(labelled_space, anchored, unlabelled_space, known=len(present), new=0)
    clustered = present[clusters.assignments]
    return np.where(clustered == probe_labels, clustered, -1)


def fit_pseudo_start(model: nn.Module, labelled: np.ndarray, labels: np.ndarray, unlabelled_loader: DataLoader,
                     known_at: float, device: torch.device, progress: bool = True) -> PseudoLabels:
    """Fit the probe head again on the labelled images and the agreed unlabelled ones (:func:`agreed_labels`).
    ``labelled``, ``labels``: the features and classes ``model``'s head, the probe, was fitted on; they and
    ``unlabelled_loader`` give each image then, after all of them, each mirrored (``probe.probe_images``). Returns
    the verdict on the unlabelled images (the first half of ``unlabelled_loader``'s); with none agreed, the head is
    left as it was."""
    pool, _ = pre_logit_features(model, unlabelled_loader, device, progress)
    images, pool_images = len(labels) // 2, len(pool) // 2
    classifier = model.get_classifier()
    logits = torch.as_tensor(pool[:pool_images]) @ classifier.weight.detach().cpu().T + classifier.bias.detach().cpu()
    known = logits.max(dim=1).values >= known_at
    agreed = np.full(pool_images, -1)
    if known.any():
        agreed[known.numpy()] = agreed_labels(
            mirror_averaged(labelled[:images], labelled[images:]), labels[:images],
            mirror_averaged(pool[:pool_images], pool[pool_images:])[known.numpy()], logits.argmax(dim=1)[known].numpy())
    used = agreed >= 0
    if used.any():  # with none agreed the head stays the probe, already fitted on the labelled images alone
        fit_head(model, np.vstack([labelled, pool[:pool_images][used], pool[pool_images:][used]]),
                 np.concatenate([labels, agreed[used], agreed[used]]))
    used = torch.as_tensor(used)
    return PseudoLabels(torch.as_tensor(agreed), used, ~known, known & ~used)

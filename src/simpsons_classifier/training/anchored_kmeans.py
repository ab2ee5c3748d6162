"""Semi-supervised k-means with the labelled classes anchored (Vaze et al., 2022, "Generalized Category
Discovery", CVPR), in a space where it compares characters well: what ``discovery`` clusters new characters with,
and what the semi-supervised start of training (``pseudo_start.py``) labels unlabelled images with.

- Each image's features are those of the image and its mirror image averaged (:func:`mirror_averaged`): a
  character facing the other way is the same character.
- Features are L2-normalised, so that the Euclidean distance k-means uses orders points as the cosine similarity
  does, then whitened by the labelled classes' within-class covariance (:func:`within_class_whitening`) so that
  the ways one character's images differ (pose, colouring, drawing style) count less than the ways characters
  differ (:func:`clustering_space`).
- The labelled points always belong to their class; each known class's centroid starts at its class mean and, as
  in GCD, is the mean of its labelled points and the unlabelled ones that fall to it. The labelled points far
  outnumber what falls to a known class, so the known centroids stay where the classes are: an unlabelled point
  near a known class joins it instead of founding a new cluster.
- New centroids, when asked for, start with k-means++ on the unlabelled points, the known centroids counting as
  already chosen, so no new centroid starts on a known class's images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

MAX_ITER = 100
RESTARTS = 5
"""k-means runs from different k-means++ seeds; the one of lowest inertia is kept (scikit-learn's
``KMeans(n_init=...)`` does the same; it cannot keep labelled points in their class, hence this loop)."""
def l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def mirror_averaged(features: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Each image's features averaged with its mirror image's: what is clustered, labelled and unlabelled alike.
    Training flips images left-right, so a character facing left and one facing right are the same character to
    the model, yet their features differ; the average is the same for both. On ``benchmarks/discover.py`` it
    lifts clustering accuracy (All, mean of three seeds) on the stand-in, fonts and emoji (README, "New
    characters"), for one more pass over the images."""
    return (features + mirrored) / 2


@dataclass(frozen=True)
class Whitening:
    """``whitening(x)``: ``x - mean`` scaled by the inverse square root of a covariance that is ``variances``
    along the rows of ``basis`` (orthonormal) and ``floor`` along every other direction."""

    mean: np.ndarray
    basis: np.ndarray
    """r×D, r at most the number of labelled images: the directions they vary along."""
    variances: np.ndarray
    floor: float

    def __call__(self, points: np.ndarray) -> np.ndarray:
        centred = points - self.mean
        projected = centred @ self.basis.T
        whitened = (projected / np.sqrt(self.variances)) @ self.basis
        if self.floor > 0:
            whitened += (centred - projected @ self.basis) / np.sqrt(self.floor)
        return whitened


def within_class_whitening(labelled: np.ndarray, labels: np.ndarray) -> Whitening:
    """What whitens features by the labelled classes' pooled within-class covariance (WCCN, Hatch et al., 2006).
    The directions along which images of one character vary (the ones training already showed: pose, colouring,
    drawing style) shrink; those along which characters differ grow, for new characters too, since they vary in
    the same ways. The covariance is Ledoit and Wolf's: there are fewer images than feature dimensions, and the
    shrinkage keeps every direction's variance above zero. On the stand-in benchmark (benchmarks/discover.py, the
    true number of new clusters given) it lifts clustering accuracy from 0.49 to 0.52 on the fine-tuned features
    and from 0.45 to 0.57 on those concatenated with the ImageNet backbone's, mostly on the known characters'
    unseen drawing styles.

    Why not scikit-learn's ``LedoitWolf``: it builds the D×D covariance and inverts it, and the whitening needs it
    decomposed again: three D³ steps, half a second at D = 1280 and half a minute at ResNet101's 5120, for each of
    the dozens of clusterings ``discover`` learns its settings with. The shrunk covariance is the sample one plus a
    multiple of the identity, so the N×D images' singular value decomposition (N images, N·D·min(N, D)) gives it
    whole, and its shrinkage is the same formula (``ledoit_wolf_shrinkage``) summed over N×N terms instead of D×D
    ones; tests/test_discover.py checks both agree with scikit-learn's."""
    present, index = np.unique(labels, return_inverse=True)
    class_means = np.stack([labelled[index == c].mean(axis=0) for c in range(len(present))])
    centred = labelled - class_means[index]
    centred -= centred.mean(axis=0)
    n, d = centred.shape
    _, singular, basis = np.linalg.svd(centred, full_matrices=False)
    squared_norms = np.einsum("nd,nd->n", centred, centred)
    mu = squared_norms.sum() / (n * d)  # the mean variance, which the covariance is shrunk towards
    delta_ = np.sum(singular ** 4) / n ** 2  # the sample covariance's squared Frobenius norm
    beta = (np.sum(squared_norms ** 2) / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * squared_norms.sum() / n + d * mu ** 2) / d
    shrinkage = 0.0 if beta == 0 else min(beta, delta) / delta
    variances = (1 - shrinkage) * singular ** 2 / n + shrinkage * mu
    kept = variances > 0
    return Whitening(labelled.mean(axis=0), basis[kept], variances[kept], shrinkage * mu)


@dataclass(frozen=True)
class Clusters:
    """Semi-supervised k-means of unlabelled points beside labelled ones of ``known`` classes."""

    assignments: np.ndarray
    """Each unlabelled point's cluster: ``0 .. known-1`` are the known classes, ``known ..`` the new clusters."""
    centroids: np.ndarray
    """(known + new) × D, unit length."""
    known: int
    similarities: np.ndarray
    """Cosine similarity of each unlabelled point to its cluster's centroid."""
    before_merging: int | None = None
    """New clusters k-means found before :func:`merge_new_clusters` joined some; None when not merged."""
    characters: np.ndarray | None = None
    """The estimated character (``0 ..``) of each new cluster: clusters sharing one are likely one character in
    several poses or drawing styles (see :func:`~simpsons_classifier.discovery.clustering.merge_thresholds`);
    None when not estimated, each cluster its own."""

    @property
    def new(self) -> int:
        return len(self.centroids) - self.known

    def character_of(self, cluster: int) -> int:
        """The estimated character of the new cluster ``cluster`` (an index of ``centroids``)."""
        return cluster if self.characters is None else int(self.characters[cluster - self.known])

    def central(self, share: float) -> np.ndarray:
        """Whether each unlabelled point is among the ``share`` of its cluster's points most similar to its centroid
        (rounded up: a cluster's nearest point is central at any share above 0)."""
        central = np.zeros(len(self.assignments), dtype=bool)
        for cluster in np.unique(self.assignments):
            members = np.flatnonzero(self.assignments == cluster)
            nearest_first = members[np.argsort(-self.similarities[members], kind="stable")]
            central[nearest_first[: math.ceil(share * len(members))]] = True
        return central

    @property
    def estimated_characters(self) -> int:
        """How many new characters the new clusters are likely to be."""
        return self.new if self.characters is None else len(np.unique(self.characters))


def semi_supervised_kmeans(
    labelled: np.ndarray,
    labels: np.ndarray,
    unlabelled: np.ndarray,
    known: int,
    new: int,
    seed: int = 0,
    restarts: int = RESTARTS,
) -> Clusters:
    """Cluster ``unlabelled`` (unit-length rows) into the ``known`` classes of ``labelled`` (``labels`` in
    ``0 .. known-1``, every class present) and ``new`` new clusters; the best of ``restarts`` runs."""
    rng = np.random.default_rng(seed)
    class_means = l2_normalise(np.stack([labelled[labels == c].mean(axis=0) for c in range(known)]))
    runs = [_anchored_kmeans(labelled, labels, unlabelled, class_means, new, rng)
            for _ in range(restarts if new else 1)]  # without new centroids nothing is random
    return min(runs, key=lambda run: run[1])[0]


def _anchored_kmeans(
    labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, class_means: np.ndarray, new: int,
    rng: np.random.Generator,
) -> tuple[Clusters, float]:
    known = len(class_means)
    centroids = np.vstack([class_means, _kmeans_plus_plus(unlabelled, class_means, new, rng)])
    labelled_sums = group_sums(labelled, labels, known + new)
    labelled_counts = np.bincount(labels, minlength=known + new)
    assignments = np.full(len(unlabelled), -1)
    for _ in range(MAX_ITER):
        previous = assignments
        assignments = _nearest(unlabelled, centroids)
        if np.array_equal(assignments, previous):
            break
        sums = labelled_sums + group_sums(unlabelled, assignments, known + new)
        counts = labelled_counts + np.bincount(assignments, minlength=known + new)
        filled = counts > 0  # an emptied new centroid stays where it was
        centroids[filled] = l2_normalise(sums[filled])
    similarities = np.einsum("nd,nd->n", unlabelled, centroids[assignments])
    # For unit-length rows the squared distance is 2 - 2 × the cosine similarity.
    inertia = float((2 - 2 * np.einsum("nd,nd->n", labelled, centroids[labels])).sum() + (2 - 2 * similarities).sum())
    return Clusters(assignments, centroids, known, similarities), inertia


def group_sums(points: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """``count`` × D: the sum of the points of each group, as a sparse one-hot product: ten times faster than
    ``np.add.at``, and k-means needs it at every iteration, the merge threshold at every threshold it tries."""
    one_hot = sparse.csr_matrix((np.ones(len(groups)), (groups, np.arange(len(groups)))), shape=(count, len(groups)))
    return np.asarray(one_hot @ points)


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid by Euclidean distance, which for unit-length rows is the highest dot product."""
    return np.argmax(points @ centroids.T, axis=1)


def _kmeans_plus_plus(points: np.ndarray, chosen: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` more centroids drawn from ``points`` with k-means++'s D² sampling, ``chosen`` counting as already
    drawn (all unit-length rows, so a squared distance is 2 - 2 × a dot product). Written here because
    scikit-learn's ``kmeans_plusplus`` always starts from nothing: there, a new centroid could start on a known
    class's unlabelled images."""
    drawn = []
    nearest = np.clip(2 - 2 * (points @ chosen.T).max(axis=1), 0, None)
    for _ in range(count):
        total = nearest.sum()
        index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        drawn.append(points[index])
        nearest = np.minimum(nearest, np.clip(2 - 2 * (points @ points[index]), 0, None))
    return np.array(drawn).reshape(count, points.shape[1])


SOURCE_MIN_IMAGES = 5
"""Images a drawing source needs for :func:`source_standardised` to move and scale it: with fewer, its mean and spread
are mostly its characters'."""
SPREAD_FLOOR = 1e-6
"""The least spread a feature is divided by: a feature constant within a source goes to the common mean."""


def source_standardised(features: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """``features`` (one row an image) with each drawing source's images moved and scaled, feature by feature, so
    that their mean and spread are every image's, as domain-specific normalisation does for each domain (Chang et
    al. 2019). ``sources``: each image's source, the file name's ``SOURCE__`` prefix (``data.split.source_group``: a
    sprite set, a font, an emoji vendor, the episode of a frame). A source with fewer than ``SOURCE_MIN_IMAGES``
    images stays as it is, as does every file whose name carries none (each its own source).

    Why: what sets a source apart (its palette, line work, resolution, an episode's grading) is shared by all its
    characters, so the k-means otherwise groups an unlabelled image with the labelled images of its own source
    rather than of its own character; a source differs in how far its features spread as well as in where they
    centre. On ``benchmarks/self_training.py --draws 4``'s frozen features (2 / 4 labels a character, four draws of
    them), the anchored k-means' labels are right on 79.4 / 89.5 % of the stand-in's unlabelled images when the
    sources are standardised, 77.6 / 88.2 % when they are only moved to the common mean and 72.7 / 85.4 % when they
    are left where they are; 71.8 / 81.0 against 68.6 / 79.4 and 55.8 / 73.3 % of fonts', 78.9 / 88.9 against
    77.3 / 88.7 and 75.2 / 87.4 % of emoji's; the probe refitted with them gains −0.2 to 3.1 points over moving
    alone. A source is assumed to hold several characters, as an episode or a sprite set does."""
    features = np.asarray(features, dtype=np.float64)
    names, index, counts = np.unique(np.asarray(sources), return_inverse=True, return_counts=True)
    means = group_sums(features, index, len(names)) / counts[:, None]
    spreads = np.sqrt(np.clip(group_sums(features ** 2, index, len(names)) / counts[:, None] - means ** 2, 0, None))
    standardised = ((features - means[index]) / np.maximum(spreads[index], SPREAD_FLOOR)
                    * features.std(axis=0) + features.mean(axis=0))
    return np.where((counts >= SOURCE_MIN_IMAGES)[index, None], standardised, features)


def standardised_by_source(labelled: np.ndarray, unlabelled: np.ndarray, sources: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, unlabelled), L2-normalised and each drawing source standardised over both together
    (:func:`source_standardised`). ``sources``: the source of each labelled image, then of each unlabelled one."""
    both = source_standardised(l2_normalise(np.vstack([labelled, unlabelled])), sources)
    return both[:len(labelled)], both[len(labelled):]


def clustering_space(labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray,
                     unlabelled_classes: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(labelled, unlabelled) as they are clustered: L2-normalised, whitened by the labelled classes' spread,
    normalised again. ``unlabelled_classes``: a class for each unlabelled point (-1: none), whose spread the
    whitening learns from as well."""
    labelled, unlabelled = l2_normalise(labelled), l2_normalise(unlabelled)
    spread_of, spread_classes = labelled, labels
    if unlabelled_classes is not None:
        given = unlabelled_classes >= 0
        spread_of = np.vstack([labelled, unlabelled[given]])
        spread_classes = np.concatenate([labels, unlabelled_classes[given]])
    whitening = within_class_whitening(spread_of, spread_classes)
    return tuple(l2_normalise(whitening(x)) for x in (labelled, unlabelled))

"""Clustering images of characters the model does not know into candidate new characters, the known characters
anchored: the semi-supervised k-means of Generalized Category Discovery (``training/anchored_kmeans.py``: mirror
averaged, whitened features, labelled classes anchored), with the number of new clusters estimated.

- The number of new clusters is estimated by the mean silhouette of the unlabelled points (see
  :func:`estimate_new_clusters` for why not GCD's own criterion). On frames of animation it over-counts: a
  character's poses and drawing styles make tight groups of near-identical images.
- So new clusters are then merged, by average linkage of how many of their images' links to their nearest images
  run between them (:func:`link_shares`), wherever they are as linked as the groups one known character splits
  into (:func:`merge_thresholds` measures that by clustering half the known characters as if they were new,
  beside the other half). Two cuts of that one merge tree are learnt: the folders, cut where the pretend-new
  characters are grouped most accurately, and the count, cut lower, where they make as many groups as they are
  characters; folders that the lower cut joins are likely one character.
- Last, each image takes the cluster its nearest images are in (:func:`neighbour_vote`), labelled images voting
  with their class: a centroid cannot follow a character across its poses, its nearest images mostly can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_samples
from sklearn.metrics.cluster import contingency_matrix
from tqdm import tqdm

from ..training.anchored_kmeans import (
    Clusters,
    clustering_space,
    group_sums,
    l2_normalise,
    semi_supervised_kmeans,
)

MAX_NEW_CLUSTERS = 120
"""The most new clusters the estimate tries: every number up to it is one k-means per restart. Well above the
characters a folder of frames brings, since the merge step (:func:`merge_new_clusters`) joins what the estimate
splits and cannot split what it joins."""
SILHOUETTE_LABELLED_PER_CLASS = 20
"""Labelled points per known class that the silhouette compares against: enough to place each class, few enough
that the estimate costs the same on a 20 000-image training set as on a 500-image one."""


def most_new_clusters(unlabelled: int) -> int:
    """The most new clusters the estimate tries by default for ``unlabelled`` points: half of them, at most
    ``MAX_NEW_CLUSTERS``."""
    return min(max(1, unlabelled // 2), MAX_NEW_CLUSTERS)


def estimate_new_clusters(
    labelled: np.ndarray,
    labels: np.ndarray,
    unlabelled: np.ndarray,
    known: int,
    max_new: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[int, dict[int, float]]:
    """The number of new clusters (0 .. ``max_new``, by default :func:`most_new_clusters`) whose clustering gives
    the unlabelled points the highest mean silhouette, and the silhouette of every number tried.

    GCD picks the number of classes that maximises plain k-means' clustering accuracy on the labelled subset,
    by Brent's method. That criterion measures how the labelled classes are split or merged, and only indirectly
    the unlabelled points: when these are few (the images one ``simpsons discover`` rejects, beside a whole
    training set), every number above the true one leaves the labelled classes as they were, the accuracy stays
    flat and the maximum is anywhere on that plateau. The silhouette of the unlabelled points themselves (how much
    nearer each is to its own cluster than to the next, counting the labelled points of the known classes) drops
    both when a character is split in two and when two are merged, however few the points. Every number in the
    range is tried: the silhouette is not unimodal enough for Brent's method on small sets, and each try is a
    k-means of a few hundred points.

    Neither criterion is good on a large pool of weakly separated images. On the stand-in benchmark's pool (500
    images, 25 new characters; benchmarks/discover.py) the silhouette keeps rising with the count (near-identical
    animation frames and drawing styles make tight small groups) up to the most it may try, while GCD's
    criterion picks 8-16 (hence :func:`merge_new_clusters`); on the small planted sets of tests/test_discover.py
    the silhouette finds the true count and GCD's criterion finds none.
    """
    max_new = most_new_clusters(len(unlabelled)) if max_new is None else max_new
    reference, reference_labels = _per_class_sample(labelled, labels, SILHOUETTE_LABELLED_PER_CLASS, seed)
    points = np.vstack([reference, unlabelled])
    scores = {}
    for new in tqdm(range(0, max_new + 1), desc="trying numbers of new characters", leave=False,
                    disable=not progress):
        clusters = semi_supervised_kmeans(labelled, labels, unlabelled, known, new, seed)
        members = np.concatenate([reference_labels, clusters.assignments])
        scores[new] = float(silhouette_samples(points, members)[len(reference):].mean())
    return max(scores, key=lambda n: (scores[n], -n)), scores


def _per_class_sample(points: np.ndarray, labels: np.ndarray, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)])
    return points[keep], labels[keep]


MERGE_NEIGHBOURS = (3, 5, 7, 10, 15, 20)
"""Nearest images per image whose links :func:`merge_new_clusters` may count between clusters; which one is learnt
with the thresholds (:func:`merge_thresholds`). It has to be fewer than the images of one character, and how many
those are depends on the dataset: with a fixed 10, the stand-in's new characters (17 images each) were clustered
best of 5, 7 and 10, and emoji's (7 images each) worse than before the links were counted (README, "New
characters")."""


def merge_new_clusters(clusters: Clusters, unlabelled: np.ndarray, threshold: float,
                       characters_threshold: float | None = None, *, neighbours: int) -> Clusters:
    """``clusters`` with its new clusters joined, by average linkage of :func:`link_shares`, while two groups share
    more than ``threshold`` of their images' links to their ``neighbours`` nearest images; the known classes'
    clusters stay as they are. With ``characters_threshold`` (at most ``threshold``), the same merge cut there too
    gives each joined cluster its estimated character (``Clusters.characters``): a lower cut of the same tree only
    joins whole clusters.

    Why links between images, not the similarity of the clusters' centres: a character's drawing styles are
    far apart as wholes (a new character's 23-pixel box sprites from its 50-pixel battle sprites) while some of
    their images are each other's nearest, and two look-alike characters (an evolution of a Pokémon) are near as
    wholes with few images that are each other's nearest. On ``benchmarks/discover.py``'s stand-in, k-means'
    clusters joined by an oracle would reach All 0.94; the centres' similarity, at the best threshold in hindsight,
    reaches 0.71 (seed 0), 10 nearest images' links 0.76; with the thresholds and the neighbours learnt, All / New
    rise from 0.704 / 0.672 to 0.755 / 0.733 (mean of three seeds; README, "New characters")."""
    return new_cluster_merges(clusters, unlabelled, neighbours)(threshold, characters_threshold)


def new_cluster_merges(clusters: Clusters, unlabelled: np.ndarray, neighbours: int
                       ) -> Callable[[float, float | None], Clusters]:
    """:func:`merge_new_clusters` at any thresholds, the links between the clusters counted and their merge tree
    built once: learning the thresholds tries two hundred of them."""
    known, assignments = clusters.known, clusters.assignments
    is_new = assignments >= known
    found, members = np.unique(assignments[is_new], return_inverse=True)  # new clusters k-means left empty drop
    if len(found) < 2:
        unmerged = replace(clusters, before_merging=len(found))
        return lambda threshold, characters_threshold=None: unmerged
    distances = 1 - link_shares(unlabelled[is_new], members, neighbours)
    np.fill_diagonal(distances, 0)
    cut = _average_linkage(distances)

    def merged_at(threshold: float, characters_threshold: float | None = None) -> Clusters:
        groups = cut(threshold)
        merged = assignments.copy()
        merged[is_new] = known + groups[members]
        characters = None
        if characters_threshold is not None:
            of_found = cut(min(characters_threshold, threshold))
            characters = np.zeros(groups.max() + 1, dtype=int)
            characters[groups] = of_found  # every cluster of a joined group falls to the same character
            _, characters = np.unique(characters, return_inverse=True)
        return _regrouped(clusters, unlabelled, merged, len(found), characters)

    return merged_at


def link_shares(points: np.ndarray, groups: np.ndarray, neighbours: int) -> np.ndarray:
    """For each two groups of ``points`` (unit-length rows; ``groups`` numbered ``0 ..`` without gaps), the share
    of the links from their points to each point's ``neighbours`` nearest other points that run between them:
    0 when no point of either has a point of the other among its nearest, 1 when every point's nearest all lie
    in the other group."""
    count = groups.max() + 1
    nearest = nearest_points(points @ points.T, min(neighbours, len(points) - 1), square=True)
    links = np.zeros((count, count))
    np.add.at(links, (np.repeat(groups, nearest.shape[1]), groups[nearest].ravel()), 1)
    sizes = np.bincount(groups, minlength=count)
    return (links + links.T) / (nearest.shape[1] * (sizes[:, None] + sizes[None, :]))


def nearest_points(similarity: np.ndarray, neighbours: int, square: bool = False) -> np.ndarray:
    """Row ``i``: the columns of row ``i``'s ``neighbours`` highest similarities, in any order; with ``square``
    (each point against the same points) a point's own column is left out."""
    if square:
        similarity = similarity.copy()
        np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, neighbours - 1, axis=1)[:, :neighbours]


def _regrouped(clusters: Clusters, unlabelled: np.ndarray, assignments: np.ndarray, before_merging: int | None,
               characters: np.ndarray | None) -> Clusters:
    """``clusters`` with the points' clusters now ``assignments`` (new ones numbered ``known ..`` without gaps): the
    known centroids kept, each new one the unit mean of its points, each point's similarity to its centroid."""
    known = clusters.known
    is_new = assignments >= known
    centroids = clusters.centroids[:known]
    if is_new.any():
        centroids = np.vstack([centroids, _group_centres(unlabelled[is_new], assignments[is_new] - known)])
    similarities = np.einsum("nd,nd->n", unlabelled, centroids[assignments])
    return Clusters(assignments, centroids, known, similarities, before_merging, characters)


def _average_linkage(distances: np.ndarray) -> Callable[[float], np.ndarray]:
    """The average-linkage tree of the clusters whose pairwise ``distances`` (1 - similarity) are given, built once,
    and what cuts it at any similarity threshold: the group of each cluster, joined while more alike than the
    threshold, groups numbered as the first cluster each joins, so that no cluster is renumbered when nothing joins
    it."""
    tree = linkage(squareform(distances, checks=False), method="average")

    def cut(threshold: float) -> np.ndarray:
        # joined only while strictly nearer than 1 - threshold (fcluster's cut keeps distances equal to it)
        groups = fcluster(tree, np.nextafter(1 - threshold, -np.inf), criterion="distance")
        _, first, groups = np.unique(groups, return_index=True, return_inverse=True)
        return np.argsort(np.argsort(first))[groups]

    return cut


def _group_centres(points: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Unit-length mean of the points of each group ``0 .. groups.max()``."""
    return l2_normalise(group_sums(points, groups, groups.max() + 1))


MERGE_THRESHOLDS = np.round(np.arange(0, 1.0001, 0.005), 3)
"""Shares of links between clusters (:func:`link_shares`) that :func:`merge_thresholds` tries: the learnt ones are a
few hundredths on the benchmark's stand-in and fonts, hence the fine steps."""
MERGE_SPLITS = 3
"""Random halvings of the known characters :func:`merge_thresholds` averages over, each half taking its turn as
the pretend-new one: on the stand-in benchmark a half is a dozen characters, and which ones moves the best
threshold by a few hundredths."""
MERGE_LABELLED_PER_CLASS = 20
"""Labelled points per known class each half keeps, so the threshold costs the same on any training set."""


def known_halvings(known: int, seed: int = 0, splits: int = MERGE_SPLITS) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random halvings of the classes ``0 .. known-1``, each as (anchor half, pretend-new half) and
    the other way round."""
    halvings = []
    for split in range(splits):
        order = np.random.default_rng(seed + split).permutation(known)
        halvings += [(order[: known // 2], order[known // 2:]), (order[known // 2:], order[: known // 2])]
    return halvings


def pretend_new(labelled: np.ndarray, labels: np.ndarray, anchor: np.ndarray, pretend: np.ndarray
                ) -> tuple[np.ndarray, ...]:
    """(anchors, their labels ``0 ..``, points, the points' classes): the ``anchor`` classes' points as the
    labelled ones, the ``pretend`` classes' as unlabelled new ones, in the :func:`clustering_space` of the anchors
    alone (new characters are whitened by the known ones only)."""
    anchor = np.sort(anchor)
    is_anchor, is_pretend = np.isin(labels, anchor), np.isin(labels, pretend)
    anchor_labels = np.searchsorted(anchor, labels[is_anchor])
    anchors, points = clustering_space(labelled[is_anchor], anchor_labels, labelled[is_pretend])
    return anchors, anchor_labels, points, labels[is_pretend]


@dataclass(frozen=True)
class MergeThresholds:
    """Two cuts of the merge of new clusters (:func:`merge_new_clusters`), learnt by :func:`merge_thresholds`."""

    folders: float
    """Where the pretend-new characters are grouped most accurately: the clusters ``discover`` writes."""
    characters: float
    """Where they make as many groups as they are characters: how many new characters ``discover`` estimates."""
    neighbours: int
    """The nearest images whose links are counted (one of :data:`MERGE_NEIGHBOURS`): where the pretend-new
    characters are grouped most accurately."""


def merge_thresholds(labelled: np.ndarray, labels: np.ndarray, known: int, seed: int = 0, progress: bool = False
                     ) -> MergeThresholds | None:
    """The shares of links above which :func:`merge_new_clusters` should join new clusters, and the nearest images
    whose links it counts, learnt where the answer is known: the known characters are split in halves, one half is
    clustered as if new beside the other (whitened by the other half only, as new characters are by the known
    ones), and over ``MERGE_SPLITS`` halvings the number of neighbours and threshold that recover the pretend-new
    characters best (``neighbours``, ``folders``) and, with those neighbours, the threshold that leaves as many
    groups as they are characters (``characters``) are kept (each threshold the middle of equals). None (merge
    nothing) with fewer than four known classes.

    Why learnt and not fixed: how alike two groups of one character are depends on the dataset (frames of one
    pose, sprites of one style) and on the features. With it (and ``MAX_NEW_CLUSTERS`` raised from 60 to 120; the
    clusters then merged by their centres' similarity) the benchmark of benchmarks/discover.py estimates 28 new
    characters of 25 on the stand-in (mean of three seeds; was 59; All 0.62, was 0.51) and 73 of 75 on emoji (was
    58; All 0.57, was 0.55); on fonts 50 of 17 (was 45; All 0.59 either way).

    Why two: the most accurate cut leaves a character in several clusters where its poses or drawing styles are
    less alike than the known characters' (joining them would join other characters too, which costs more), so it
    over-counts: 34 of 25 on the stand-in, 38 of 17 on fonts. The cut that matches the count on the known halves
    counts 25 and 15 there, and 84 of 75 on emoji (87 at the first cut), mostly at a cost in accuracy (All 0.61
    against 0.66 on the stand-in, 0.47 against 0.65 on fonts, 0.62 against 0.61 on emoji): the count is told, and
    the folders it would join are named, rather than joined."""
    if known < 4:
        return None
    labelled, labels = _per_class_sample(labelled, labels, MERGE_LABELLED_PER_CLASS, seed)
    accuracies, counts = [], []  # halving × neighbours × threshold
    for anchor, pretend in tqdm(known_halvings(known, seed), desc="learning from the known characters when to merge",
                                leave=False, disable=not progress):
        anchors, anchor_labels, points, truth = pretend_new(labelled, labels, anchor, pretend)
        new, _ = estimate_new_clusters(anchors, anchor_labels, points, len(anchor), seed=seed)
        found = semi_supervised_kmeans(anchors, anchor_labels, points, len(anchor), new, seed)
        none_known = np.zeros(len(points), dtype=bool)
        merged = [[merge(t) for t in MERGE_THRESHOLDS]
                  for merge in (new_cluster_merges(found, points, n) for n in MERGE_NEIGHBOURS)]
        accuracies.append([[clustering_accuracy(truth, m.assignments, old=none_known).all for m in row]
                           for row in merged])
        counts.append([[m.new / len(pretend) for m in row] for row in merged])
    accuracy, count_error = np.mean(accuracies, axis=0), np.abs(np.mean(counts, axis=0) - 1)
    best = int(accuracy.max(axis=1).argmax())  # the first, fewest neighbours, of equals
    accuracy, count_error = accuracy[best], count_error[best]
    return MergeThresholds(folders=_middle(MERGE_THRESHOLDS[accuracy == accuracy.max()]),
                           characters=_middle(MERGE_THRESHOLDS[count_error == count_error.min()]),
                           neighbours=MERGE_NEIGHBOURS[best])


def _middle(thresholds: np.ndarray) -> float:
    """The middle of equally good thresholds: as far from merging too much as from merging too little."""
    return float(np.median(thresholds))


NEIGHBOURS = 3
"""Nearest images each image's vote counts (:func:`neighbour_vote`): fewer than the images of the smallest character
a folder brings (5 a drawing on emoji, where 5 and 10 neighbours gave less than 3)."""
VOTE_ROUNDS = 10
"""Rounds of voting at most; on the benchmark's pools it settles in two to four."""


def neighbour_vote(clusters: Clusters, labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray,
                   neighbours: int = NEIGHBOURS) -> Clusters:
    """``clusters`` with each unlabelled point moved to the cluster most of its ``neighbours`` nearest points
    (labelled ones counting as their class, ``labels``) are in, its own counting once and ties keeping it where
    it is; repeated until nothing moves. New clusters left empty are dropped, the rest renumbered in order.

    Why: k-means gives each image its nearest centroid, and one centroid cannot follow a character through its
    poses and drawing styles, while an image's nearest image is of its own character far more often (98 % of the
    new characters' images on ``benchmarks/discover.py``'s stand-in and fonts pools, 83 % on emoji's). On that
    benchmark (mean of three seeds) the vote lifts All from 0.689 to 0.704 on the stand-in, 0.662 to 0.672 on fonts
    and 0.674 to 0.702 on emoji, in all nine seeds: a known character's image in a style its centroid is far from
    is pulled to it by its labelled neighbours (Old 0.80 to 0.88 on the stand-in, 0.84 to 0.88 on fonts), and stray
    images of new characters join their neighbours (New 0.669 to 0.694 on emoji)."""
    known, points = clusters.known, np.vstack([labelled, unlabelled])
    similarity = unlabelled @ points.T
    similarity[np.arange(len(unlabelled)), len(labelled) + np.arange(len(unlabelled))] = -np.inf
    neighbours = min(neighbours, len(points) - 1)
    if neighbours < 1:  # a lone image and nothing else: no one to vote
        return clusters
    nearest = nearest_points(similarity, neighbours)  # in any order: votes count
    assignments, rows = clusters.assignments.copy(), np.arange(len(unlabelled))
    for _ in range(VOTE_ROUNDS):
        everyone = np.concatenate([labels, assignments])
        votes = np.zeros((len(unlabelled), len(clusters.centroids)))
        np.add.at(votes, (np.repeat(rows, neighbours), everyone[nearest].ravel()), 1)
        votes[rows, assignments] += 1
        voted = np.where(votes.max(axis=1) > votes[rows, assignments], votes.argmax(axis=1), assignments)
        if np.array_equal(voted, assignments):
            break
        assignments = voted
    is_new = assignments >= known
    kept, renumbered = np.unique(assignments[is_new], return_inverse=True)
    assignments[is_new] = known + renumbered
    characters = clusters.characters
    if characters is not None:
        _, characters = np.unique(characters[kept - known], return_inverse=True)
    return _regrouped(clusters, unlabelled, assignments, clusters.before_merging, characters)


def discover_clusters(
    labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, known: int, max_new: int | None = None,
    seed: int = 0, progress: bool = False,
) -> Clusters:
    """Semi-supervised k-means of ``unlabelled`` in the :func:`clustering_space`, with the estimated number of
    new clusters, then the new clusters as linked as one known character's groups merged, each merged cluster's
    estimated character (:class:`MergeThresholds`), and each point moved to its nearest points' cluster
    (:func:`neighbour_vote`)."""
    thresholds = merge_thresholds(labelled, labels, known, seed, progress)
    labelled, unlabelled = clustering_space(labelled, labels, unlabelled)
    new, _ = estimate_new_clusters(labelled, labels, unlabelled, known, max_new, seed, progress)
    found = semi_supervised_kmeans(labelled, labels, unlabelled, known, new, seed)
    if thresholds is not None:
        found = merge_new_clusters(found, unlabelled, thresholds.folders, thresholds.characters,
                                   neighbours=thresholds.neighbours)
    return neighbour_vote(found, labelled, labels, unlabelled)


@dataclass(frozen=True)
class ClusteringAccuracy:
    """GCD's clustering accuracy: one Hungarian matching of clusters to classes over all the points, then the
    share of points whose cluster is matched to their class, over all, the old classes' and the new classes'."""

    all: float
    old: float
    new: float


def clustering_accuracy(truth: np.ndarray, clusters: np.ndarray, old: np.ndarray) -> ClusteringAccuracy:
    """``truth``: class of each point; ``clusters``: its cluster; ``old``: True where its class is a known one.
    A cluster matched to no class (more clusters than classes) counts every point in it as wrong."""
    correct = matched_right(truth, clusters)
    old = np.asarray(old, dtype=bool)
    return ClusteringAccuracy(all=float(correct.mean()),
                              old=float(correct[old].mean()) if old.any() else float("nan"),
                              new=float(correct[~old].mean()) if (~old).any() else float("nan"))


def matched_right(truth: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Whether each point's cluster is matched to its class by one Hungarian matching of clusters to classes over
    all the points (GCD's), the matching that puts the most points right."""
    _, class_index = np.unique(truth, return_inverse=True)
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    counts = contingency_matrix(class_index, cluster_index)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    matched_class = np.full(len(cluster_ids), -1)
    matched_class[columns] = rows
    return matched_class[cluster_index] == class_index

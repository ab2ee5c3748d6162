"""``simpsons discover``: clustering rejected images into candidate new characters, known characters anchored."""

from __future__ import annotations

import numpy as np
import pytest

from simpsons_classifier.discovery.clustering import (
    clustering_accuracy,
    discover_clusters,
    l2_normalise,
    semi_supervised_kmeans,
)

DIMENSIONS = 32


def planted(known: int, new_sizes: list[int], labelled_per_class: int = 20, unlabelled_per_known: int = 3,
            spread: float = 0.25, seed: int = 0):
    """Labelled points of ``known`` classes and unlabelled points of those classes and of ``len(new_sizes)``
    new ones, each class a tight blob around its own random direction."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(known + len(new_sizes), DIMENSIONS)))

    def blob(c: int, n: int) -> np.ndarray:
        return centres[c] + spread * rng.normal(size=(n, DIMENSIONS)) / np.sqrt(DIMENSIONS)

    labels = np.repeat(np.arange(known), labelled_per_class)
    truth = np.r_[np.repeat(np.arange(known), unlabelled_per_known),
                  np.repeat(np.arange(known, known + len(new_sizes)), new_sizes)]
    labelled = np.vstack([blob(c, labelled_per_class) for c in range(known)])
    unlabelled = np.vstack([blob(c, 1) for c in truth])
    return labelled, labels, unlabelled, truth


def test_planted_new_characters_are_found_and_counted():
    labelled, labels, unlabelled, truth = planted(known=6, new_sizes=[12, 9, 7, 5])
    clusters = discover_clusters(labelled, labels, unlabelled, known=6)
    assert clusters.new == 4
    accuracy = clustering_accuracy(truth, clusters.assignments, old=truth < 6)
    assert (accuracy.all, accuracy.old, accuracy.new) == (1.0, 1.0, 1.0)
    # the unlabelled images of known classes fall to their own class's cluster, not merely to some cluster
    assert np.array_equal(clusters.assignments[truth < 6], truth[truth < 6])


def test_no_new_character_when_every_unlabelled_point_belongs_to_a_known_class():
    labelled, labels, unlabelled, truth = planted(known=5, new_sizes=[], unlabelled_per_known=4)
    clusters = discover_clusters(labelled, labels, unlabelled, known=5)
    assert clusters.new == 0
    assert np.array_equal(clusters.assignments, truth)


def test_labelled_points_anchor_their_class_against_a_crowd_of_unlabelled_points():
    """Many unlabelled points between two known classes form a new cluster instead of dragging a known centroid
    over: the known centroids stay at their labelled points."""
    labelled, labels, unlabelled, _ = planted(known=3, new_sizes=[40])
    clusters = semi_supervised_kmeans(l2_normalise(labelled), labels, l2_normalise(unlabelled), known=3, new=1)
    class_means = l2_normalise(np.stack([l2_normalise(labelled)[labels == c].mean(axis=0) for c in range(3)]))
    assert np.all(np.einsum("kd,kd->k", clusters.centroids[:3], class_means) > 0.99)
    assert np.all(clusters.assignments[-40:] == 3)
    assert np.all((clusters.similarities > 0) & (clusters.similarities <= 1 + 1e-6))


def test_clustering_accuracy_matches_once_over_all_then_scores_old_and_new():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 7, 7, 7, 9, 9, 9])
    # the one matching over all: 5->0 (2 hits), 7->1 (2 hits), 9->2 (3 hits); 7 cannot be 0 as well
    accuracy = clustering_accuracy(truth, clusters, old=truth == 0)
    assert accuracy.all == pytest.approx(7 / 8)
    assert accuracy.old == pytest.approx(2 / 3)
    assert accuracy.new == pytest.approx(5 / 5)


def test_a_cluster_left_unmatched_counts_as_wrong():
    truth = np.array([0, 0, 1, 1])
    accuracy = clustering_accuracy(truth, np.array([0, 1, 2, 3]), old=np.array([True, True, False, False]))
    assert accuracy.all == pytest.approx(0.5)

"""``simpsons discover``: clustering rejected images into candidate new characters, known characters anchored."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf
from synthetic import draw_character
from tiny_runs import train_tiny_run

from simpsons_classifier.cli import main

from simpsons_classifier.data.scan import Sample
from simpsons_classifier.discovery.clustering import (
    clustering_accuracy,
    discover_clusters,
    link_shares,
    merge_new_clusters,
    merge_thresholds,
    neighbour_vote,
)
from simpsons_classifier.discovery.detail import (
    AS_THEY_ARE,
    DETAIL_LEVELS,
    KnownFeatures,
    Shrunk,
    choose_detail,
    detail_accuracies,
)
from simpsons_classifier.discovery.results import Discovery, new_cluster_name
from simpsons_classifier.discovery.run import (
    _clusters,
    _known_features,
    _sources_standardised,
    _to_embed,
    discover,
)
from simpsons_classifier.evaluation.ood_scores import FeatureBank
from simpsons_classifier.models import PenultimateFeatures
from simpsons_classifier.training.anchored_kmeans import (
    Clusters,
    l2_normalise,
    semi_supervised_kmeans,
    within_class_whitening,
)
from simpsons_classifier.run_dir import RunDir

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


def two_poses(known: int, new: int, labelled_per_pose: int = 8, unlabelled_per_pose: int = 6, seed: int = 0):
    """Like :func:`planted`, but every character is two tight groups (two poses) either side of its centre, along
    a direction of its own, so the known characters show how far apart one character's groups lie."""
    rng = np.random.default_rng(seed)
    dimensions = 64
    centres = l2_normalise(rng.normal(size=(known + new, dimensions)))
    poses = l2_normalise(rng.normal(size=(known + new, dimensions)))

    def images(c: int, n: int) -> np.ndarray:
        return np.vstack([centres[c] + side * 0.35 * poses[c] + 0.05 * rng.normal(size=(n, dimensions)) / np.sqrt(dimensions)
                          for side in (-1, 1)])

    labelled = np.vstack([images(c, labelled_per_pose) for c in range(known)])
    unlabelled = np.vstack([images(c, unlabelled_per_pose) for c in range(known, known + new)])
    return (labelled, np.repeat(np.arange(known), 2 * labelled_per_pose), unlabelled,
            np.repeat(np.arange(known, known + new), 2 * unlabelled_per_pose))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_new_character_split_into_its_poses_is_merged_as_the_known_ones_show(seed):
    labelled, labels, unlabelled, truth = two_poses(known=12, new=4, seed=seed)
    clusters = discover_clusters(labelled, labels, unlabelled, known=12)
    assert clusters.before_merging == 8  # the silhouette splits every new character into its two poses
    assert clusters.new == 4 and clusters.estimated_characters == 4
    assert clustering_accuracy(truth, clusters.assignments, old=truth < 12).all == 1.0


def test_the_neighbours_whose_links_are_counted_are_learnt_fewer_for_characters_of_few_images():
    few = two_poses(known=12, new=4, labelled_per_pose=2, unlabelled_per_pose=2)  # four images a character
    many = two_poses(known=12, new=4, labelled_per_pose=8, unlabelled_per_pose=6)
    assert merge_thresholds(*few[:2], known=12).neighbours == 3
    assert merge_thresholds(*many[:2], known=12).neighbours >= 7
    labelled, labels, unlabelled, truth = few
    clusters = discover_clusters(labelled, labels, unlabelled, known=12)
    assert clustering_accuracy(truth, clusters.assignments, old=truth < 12).all == 1.0  # 0.75 counting 10 links


def arc(plane: tuple[int, int], degrees: list[float]) -> np.ndarray:
    """Unit points at ``degrees`` in the plane of two of five axes."""
    points = np.zeros((len(degrees), 5))
    points[:, plane[0]], points[:, plane[1]] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return points


def drawn_apart_and_look_alikes() -> tuple[Clusters, np.ndarray]:
    """A known class's image (cluster 0), then a character drawn in two styles (clusters 1 and 2: eight images 10°
    apart along an arc, its two halves' centres 40° apart), then two look-alike characters (clusters 3 and 4: four
    images within 3° of each, 30° apart). The look-alikes' centres are nearer than the two styles', but no image of
    one is among the other's three nearest, while the styles' images where they meet are."""
    unlabelled = np.vstack([arc((0, 1), [0]), arc((1, 2), list(range(0, 80, 10))),
                            arc((3, 4), [-1.5, -0.5, 0.5, 1.5]), arc((3, 4), [28.5, 29.5, 30.5, 31.5])])
    assignments = np.repeat([0, 1, 2, 3, 4], [1, 4, 4, 4, 4])
    centroids = np.vstack([unlabelled[0], *(l2_normalise(unlabelled[assignments == c].sum(axis=0, keepdims=True))
                                            for c in range(1, 5))])
    return Clusters(assignments, centroids, 1, np.ones(len(unlabelled))), unlabelled


def test_merging_joins_clusters_whose_images_are_each_others_nearest_not_those_whose_centres_are():
    found, unlabelled = drawn_apart_and_look_alikes()
    centres = found.centroids[1:] @ found.centroids[1:].T
    assert centres[2, 3] > centres[0, 1]  # merging by the centres would join the look-alikes first
    merged = merge_new_clusters(found, unlabelled, threshold=0.05, neighbours=3)
    assert merged.assignments.tolist() == [0] + [1] * 8 + [2] * 4 + [3] * 4
    assert (merged.new, merged.before_merging) == (3, 4)
    assert np.allclose(merged.centroids[0], unlabelled[0])  # the known class keeps its centroid
    assert np.allclose(merged.centroids[1], l2_normalise(unlabelled[1:9].sum(axis=0, keepdims=True))[0])
    assert np.allclose(merged.similarities, np.einsum("nd,nd->n", unlabelled, merged.centroids[merged.assignments]))
    assert merge_new_clusters(found, unlabelled, threshold=0.5, neighbours=3).assignments.tolist() == \
        found.assignments.tolist()  # the styles share a sixth of their links: below a half, nothing joins


def test_link_shares_count_the_links_between_two_groups_of_all_their_links():
    points = arc((0, 1), [0, 1, 10, 11])  # two pairs: each point's nearest is its pair's other point
    shares = link_shares(points, np.array([0, 0, 1, 1]), neighbours=1)
    assert np.allclose(shares, [[1, 0], [0, 1]])
    shares = link_shares(points, np.array([0, 1, 2, 2]), neighbours=1)
    assert np.allclose(shares[0, 1], 1) and np.allclose(shares[0, 2], 0)  # 0 and 1 link only to each other
    shares = link_shares(points, np.array([0, 0, 1, 1]), neighbours=2)  # the second nearest lies across
    assert np.allclose(shares[0, 1], 0.5)


def test_the_lower_cut_names_the_characters_of_whole_clusters_and_never_splits_one():
    found, unlabelled = drawn_apart_and_look_alikes()
    kept_apart = merge_new_clusters(found, unlabelled, threshold=0.5, characters_threshold=0.05, neighbours=3)
    assert kept_apart.assignments.tolist() == found.assignments.tolist()  # the folders, as the first cut leaves them
    assert kept_apart.characters.tolist() == [0, 0, 1, 2] and kept_apart.estimated_characters == 3
    joined = merge_new_clusters(found, unlabelled, threshold=0.05, characters_threshold=0.5, neighbours=3)
    assert joined.new == 3 and joined.characters.tolist() == [0, 1, 2]  # capped at the folders' cut
    assert merge_new_clusters(found, unlabelled, threshold=0.5, neighbours=3).characters is None


def test_each_image_takes_its_nearest_images_cluster_and_emptied_clusters_drop():
    labelled = l2_normalise(np.array([[1.0, 0, 0, 0], [1, 0.1, 0, 0]]))  # the known class, two images
    unlabelled = l2_normalise(np.array([
        [1, 0.05, 0.05, 0],  # a known character's image that k-means put in a new cluster: its labelled neighbours
        [0, 1, 0, 0], [0, 1, 0.1, 0], [0, 1, -0.1, 0],  # a new character, one image astray in the next cluster
        [0, 0, 1, 0], [0, 0, 1, 0.1], [0, 0, 1, -0.1], [0, 0.1, 1, 0]]))  # another new character
    centroids = np.vstack([[1.0, 0, 0, 0], unlabelled[[0, 1, 4]]])
    found = Clusters(np.array([1, 2, 2, 3, 3, 3, 3, 3]), centroids, 1, np.ones(8), before_merging=5,
                     characters=np.array([0, 1, 1]))
    voted = neighbour_vote(found, labelled, np.array([0, 0]), unlabelled)
    assert voted.assignments.tolist() == [0, 1, 1, 1, 2, 2, 2, 2]  # cluster 1 emptied, the rest renumbered
    assert voted.new == 2 and voted.before_merging == 5 and voted.characters.tolist() == [0, 0]
    assert np.allclose(voted.centroids[0], [1, 0, 0, 0])  # a known class keeps its centroid
    assert np.allclose(voted.centroids[1], l2_normalise(unlabelled[1:4].sum(axis=0, keepdims=True))[0])
    assert np.allclose(voted.similarities, np.einsum("nd,nd->n", unlabelled, voted.centroids[voted.assignments]))
    tied = Clusters(np.array([1, 2]), np.vstack([[1.0, 0, 0, 0], np.eye(4)[1:3]]), 1, np.ones(2))
    apart = l2_normalise(np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0]]))  # each the other's only neighbour: a tie
    assert neighbour_vote(tied, labelled, np.array([0, 0]), apart, neighbours=1).assignments.tolist() == [1, 2]


def test_clusters_likely_the_same_character_name_each_other(monkeypatch):
    labelled, labels, unlabelled, _ = planted(known=2, new_sizes=[3, 2, 1], unlabelled_per_known=0)
    found = Clusters(np.array([2, 2, 2, 3, 3, 4]), l2_normalise(np.ones((5, DIMENSIONS))), 2, np.ones(6),
                     characters=np.array([0, 1, 0]))  # the largest and the smallest cluster: one character
    monkeypatch.setattr("simpsons_classifier.discovery.run.discover_clusters", lambda *args, **kwargs: found)
    clusters = _clusters(labelled, labels, ["apu", "marge"], unlabelled, [f"{i}.png" for i in range(6)],
                         np.ones(6, dtype=bool), False)
    likely = {c.name: c.likely_same for c in clusters}
    assert likely == {new_cluster_name(1): (new_cluster_name(3),), new_cluster_name(2): (),
                      new_cluster_name(3): (new_cluster_name(1),)}
    discovery = Discovery("run", "frames", None, files=6, clusters=clusters)
    assert discovery.likely_characters == 2
    assert "3 candidate new characters (likely 2: some are one character in another pose or style)" in \
        discovery.summary()


def in_two_sources(seed: int = 1):
    """:func:`planted` with the unlabelled images in two drawing sources: every other one moved by an offset of
    its source ("art") that no labelled image (all "sprite") shows, as a drawing style training lacked."""
    labelled, labels, unlabelled, truth = planted(known=6, new_sizes=[12, 12, 12, 12], unlabelled_per_known=6,
                                                  seed=seed)
    art_offset = np.random.default_rng(seed + 10).normal(size=DIMENSIONS) / np.sqrt(DIMENSIONS)
    in_art = np.arange(len(truth)) % 2 == 1
    named = [f"{'art' if art else 'sprite'}__{i}.png" for i, art in enumerate(in_art)]
    known = KnownFeatures(AS_THEY_ARE, labelled, labels, np.array(["sprite"] * len(labels)))
    return known, unlabelled + in_art[:, None] * art_offset, named, truth


def test_a_drawing_source_named_in_the_file_names_is_standardised_so_characters_cluster_across_sources():
    known, unlabelled, named, truth = in_two_sources()
    unnamed = [name.replace("__", "-") for name in named]

    def accuracy(paths: list[str]) -> float:
        labelled, standardised = _sources_standardised(known, unlabelled, paths)
        clusters = discover_clusters(labelled, known.labels, standardised, known=6, seed=1)
        return clustering_accuracy(truth, clusters.assignments, old=truth < 6).all

    assert accuracy(named) == 1.0
    # unnamed, each file is its own source and nothing moves, so the art images cluster by their source
    assert accuracy(unnamed) < 0.8
    np.testing.assert_allclose(_sources_standardised(known, unlabelled, unnamed)[1], l2_normalise(unlabelled))


def test_the_accepted_images_are_embedded_only_where_a_source_is_standardised_by_them():
    known, _, named, _ = in_two_sources()
    to_cluster = np.arange(len(named)) % 3 != 0
    unnamed = [name.replace("__", "-") for name in named]
    assert _to_embed(known, named, to_cluster).all()
    # the training images' own source is standardised, so every image of the folder counts in the statistics
    assert _to_embed(known, unnamed, to_cluster).all()
    unnamed_known = KnownFeatures(known.detail, known.features, known.labels, np.arange(len(known.labels)).astype(str))
    np.testing.assert_array_equal(_to_embed(unnamed_known, unnamed, to_cluster), to_cluster)
    no_names = KnownFeatures(known.detail, known.features, known.labels, None)
    np.testing.assert_array_equal(_to_embed(no_names, named, to_cluster), to_cluster)


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


@pytest.mark.parametrize("images, dimensions", [(60, 200), (200, 40)])
def test_the_whitening_is_scikit_learns_ledoit_wolf_covariance_inverted(images, dimensions):
    rng = np.random.default_rng(0)
    labels = np.arange(images) % 5
    labelled = rng.normal(size=(images, dimensions)) * rng.uniform(0.2, 3, dimensions) + labels[:, None]
    points = rng.normal(size=(7, dimensions))
    within = labelled - np.stack([labelled[labels == c].mean(axis=0) for c in range(5)])[labels]
    eigenvalues, eigenvectors = np.linalg.eigh(LedoitWolf().fit(within).covariance_)
    expected = (points - labelled.mean(axis=0)) @ ((eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T)
    assert np.allclose(within_class_whitening(labelled, labels)(points), expected, atol=1e-8)


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


def test_new_clusters_skip_the_names_of_known_characters_called_new_nn():
    labelled, labels, unlabelled, truth = planted(known=4, new_sizes=[6, 6], unlabelled_per_known=0)
    classes = ["apu", new_cluster_name(1), "marge", new_cluster_name(3)]  # clusters added without renaming
    clusters = _clusters(labelled, labels, classes, unlabelled, [f"frame{i}.png" for i in range(len(unlabelled))],
                         np.ones(len(unlabelled), dtype=bool), progress=False)
    assert sorted(c.name for c in clusters if c.new) == [new_cluster_name(2), new_cluster_name(4)]
    assert all(c.name in classes for c in clusters if not c.new)


def test_images_the_rule_accepts_leave_the_known_clusters_but_stay_in_new_ones():
    """With every image clustered, one the rule accepts is taken as unknown only when it lies in a new cluster."""
    labelled, labels, unlabelled, truth = planted(known=3, new_sizes=[6, 5], unlabelled_per_known=4)
    paths = [f"frame{i}.png" for i in range(len(unlabelled))]
    rejected = np.zeros(len(paths), dtype=bool)
    rejected[[0, 5]] = True  # one image of character 0, one of character 1: rejected, yet nearest their own
    clusters = _clusters(labelled, labels, ["apu", "bart", "marge"], unlabelled, paths, rejected, progress=False)
    assert {c.name: c.paths for c in clusters if not c.new} == {"apu": ["frame0.png"], "bart": ["frame5.png"]}
    new = sorted(sorted(c.paths) for c in clusters if c.new)
    assert new == sorted(sorted(p for p, t in zip(paths, truth) if t == c) for c in (3, 4))


def test_shrunk_shrinks_only_images_larger_than_the_level_keeping_their_shape():
    seen = []
    cases = ((48, (200, 100), (48, 24)), (48, (30, 20), (30, 20)), (None, (200, 100), (200, 100)))
    for level, size, expected in cases:
        Shrunk(lambda image: seen.append(image.size), level)(Image.new("RGB", size))
        assert seen[-1] == expected


def test_the_detail_check_tells_features_that_group_the_characters_from_ones_that_do_not():
    labelled, labels, _, _ = planted(known=8, new_sizes=[1], unlabelled_per_known=0)
    noise = np.random.default_rng(1).normal(size=labelled.shape)
    grouped, scattered = detail_accuracies(labelled, labels, known=8), detail_accuracies(noise, labels, known=8)
    assert grouped.mean() > 0.9 and scattered.mean() < 0.6


def test_the_detail_chosen_is_the_least_detailed_within_one_standard_error_of_the_best():
    spread = np.array([-0.02, 0.0, 0.02])  # standard error 0.0115
    assert choose_detail({None: 0.70 + spread, 96: 0.60 + spread, 48: 0.65 + spread}).longest_side is None
    assert choose_detail({None: 0.70 + spread, 96: 0.69 + spread, 48: 0.60 + spread}).longest_side == 96
    chosen = choose_detail({None: 0.70 + spread, 96: 0.65 + spread, 48: 0.695 + spread})
    assert chosen.describe() == "shrunk to 48 px" and chosen.scores[None] == pytest.approx(0.70)


def test_without_the_training_images_the_known_characters_are_compared_as_they_are(monkeypatch, tmp_path):
    class Moved:
        class split:
            train = [Sample(str(tmp_path / "gone" / f"{i}.png"), "apu") for i in range(3)]

    monkeypatch.setattr("simpsons_classifier.discovery.run.RunData.read", lambda run: Moved)
    features = torch.ones(3, DIMENSIONS)
    bank = FeatureBank(features, torch.zeros(3, dtype=torch.long), ["apu"], torch.zeros(1, DIMENSIONS),
                       torch.zeros(1))
    known, embedding = _known_features(RunDir(tmp_path), None, bank, progress=False)
    assert known.detail == AS_THEY_ARE and embedding is PenultimateFeatures  # what the bank holds
    assert np.array_equal(known.features, np.ones((3, DIMENSIONS))) and list(known.labels) == [0, 0, 0]
    assert known.sources is None  # the bank keeps no file names


# --- the command, end to end, on a tiny trained run (trained once for these tests: slow) ---


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    return RunDir(train_tiny_run(tmp_path_factory.mktemp("discover"), classes=4))


def set_threshold(run: RunDir, threshold: float) -> None:
    """Make the run's rule reject every image (a huge threshold) or accept every one (a very low one)."""
    stored = json.loads(run.openset.read_text())
    run.openset.write_text(json.dumps({**stored, "threshold": threshold}))


def new_characters(folder: Path) -> Path:
    """Three characters the run never saw (four images each, one in a sub-folder), a text file and an empty
    "image"."""
    for character in (20, 21, 22):
        for variant in range(4):
            where = folder / "more" if variant == 3 else folder
            where.mkdir(parents=True, exist_ok=True)
            draw_character(character, variant).save(where / f"c{character}_{variant}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def discover_cli(run: RunDir, images: Path, out: Path, capsys) -> tuple[int, str, str]:
    status = main(["discover", "--run", str(run), "--images", str(images), "--out", str(out)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_discover_writes_clusters_folders_and_page_and_leaves_the_images_alone(run, tmp_path, capsys):
    set_threshold(run, 1e9)
    run.feature_bank.unlink()  # a run evaluated before runs kept their training features
    images = new_characters(tmp_path / "images")
    before = snapshot(images)
    out = tmp_path / "out"
    status, printed, errors = discover_cli(run, images, out, capsys)
    assert status == 0
    assert run.feature_bank.is_file()  # computed again for the unknown-character score
    assert snapshot(images) == before
    assert f"{images / 'notes.txt'}: " in errors and f"{images / 'empty.png'}: empty file" in errors
    assert "2 of 14 files could not be read" in errors
    with open(out / "clusters.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "cluster"]
    assert sorted(path for path, _ in rows[1:]) == sorted(str(p) for p in images.rglob("c*.png"))
    clusters = Counter(cluster for _, cluster in rows[1:])
    for name, size in clusters.items():
        copies = sorted(p.name for p in (out / name).iterdir())
        assert copies == sorted(Path(path).name for path, cluster in rows[1:] if cluster == name)
        assert f"{name}/" in printed
    new = [clusters[name] for name in sorted(clusters) if name.startswith("new-")]
    assert new and new == sorted(new, reverse=True)  # new-01 is the largest
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(clusters)
    assert all(f'id="{name}"' in page for name in clusters)
    assert "notes.txt" in page and "--init" in page
    assert "Images were compared" in page and "(images compared " in printed
    assert len(re.findall(r"(as they are|\d+ px) [01]\.\d{3}", page)) == len(DETAIL_LEVELS)
    assert (out / "skipped.csv").is_file()

    # A second run replaces the first one's output, but never a folder discover did not write.
    status, _, _ = discover_cli(run, images, out, capsys)
    assert status == 0
    (out / next(iter(clusters))).rename(out / "homer")
    status, _, errors = discover_cli(run, images, out, capsys)
    assert status == 2 and "homer" in errors and (out / "homer").is_dir()


@pytest.mark.slow
def test_nothing_to_discover_is_said_plainly_with_an_empty_table(run, tmp_path, capsys):
    images = new_characters(tmp_path / "images")
    set_threshold(run, -1e9)
    status, printed, _ = discover_cli(run, images, tmp_path / "all-known", capsys)
    assert status == 0 and "all 12 readable images" in printed and "look like characters the run knows" in printed
    assert "12 images accepted by the rule as known characters; --every-image clusters them too" in printed
    assert (tmp_path / "all-known" / "clusters.csv").read_text().splitlines() == ["path,cluster"]

    set_threshold(run, 1e9)
    (tmp_path / "empty").mkdir()
    status, printed, _ = discover_cli(run, tmp_path / "empty", tmp_path / "none", capsys)
    assert status == 0 and "holds no files: nothing to discover" in printed
    assert (tmp_path / "none" / "clusters.csv").read_text().splitlines() == ["path,cluster"]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (broken / "b.txt").write_text("hello")
    before = snapshot(broken)
    status, printed, errors = discover_cli(run, broken, tmp_path / "unreadable", capsys)
    assert status == 0 and "none of the 2 files" in printed and "a.jpg" in errors and "b.txt" in errors
    assert (tmp_path / "unreadable" / "clusters.csv").read_text().splitlines() == ["path,cluster"]
    assert snapshot(broken) == before


@pytest.mark.slow
def test_every_image_finds_the_new_characters_a_rule_accepting_them_all_lets_through(run, tmp_path, capsys):
    images = new_characters(tmp_path / "images")
    set_threshold(run, -1e9)  # the rule accepts every image: alone it finds nothing
    status, printed, _ = main(["discover", "--run", str(run), "--images", str(images), "--out",
                               str(tmp_path / "out"), "--every-image"]), *capsys.readouterr()
    assert status == 0
    with open(tmp_path / "out" / "clusters.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # none is rejected, so only new clusters are written; an image grouped with a known character stays known
    assert rows and all(row["cluster"].startswith("new-") for row in rows)
    cells = r"<td>{}</td>\s*<td>0</td><td>{}</td>".format(12 - len(rows), len(rows))  # known, rejected, unknown
    assert re.search(cells, (tmp_path / "out" / "index.html").read_text())
    assert f"{len(rows)} of 12 readable images taken as unknown" in printed and "accepted by the rule" not in printed
    assert "--every-image" in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.slow
def test_an_output_folder_that_is_not_a_discover_output_is_refused(run, tmp_path, capsys):
    images = new_characters(tmp_path / "images")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    status, _, errors = discover_cli(run, images, out, capsys)
    assert status == 2 and f"--out {out} exists and is not a discover output" in errors
    assert snapshot(out) == {"thesis.tex": b"precious"}
    status, _, errors = discover_cli(run, images, images / "out", capsys)
    assert status == 2 and "overlap" in errors and not (images / "out").exists()


@pytest.mark.slow
def test_a_run_without_an_unknown_character_rule_is_refused_with_the_fix(run, tmp_path, capsys):
    images = new_characters(tmp_path / "images")
    rule = run.openset.read_bytes()
    run.openset.unlink()
    try:
        status, _, errors = discover_cli(run, images, tmp_path / "out", capsys)
    finally:
        run.openset.write_bytes(rule)
    assert status == 2 and "no unknown-character rule" in errors and f"simpsons evaluate --run {run}" in errors
    with pytest.raises(FileNotFoundError, match=r"no-run is not a folder"):
        discover(tmp_path / "no-run", images, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("stored, problem", [("{", "is not an unknown-character rule (JSONDecodeError"),
                                             ('{"threshold": 1.0}', "is not an unknown-character rule (KeyError"),
                                             ('{"score": "psychic", "threshold": 1.0}', "unknown open-set score")])
def test_a_damaged_unknown_character_rule_is_refused_naming_the_file(run, tmp_path, capsys, stored, problem):
    images = new_characters(tmp_path / "images")
    rule = run.openset.read_bytes()
    run.openset.write_text(stored)
    try:
        status, _, errors = discover_cli(run, images, tmp_path / "out", capsys)
    finally:
        run.openset.write_bytes(rule)
    assert status == 2 and f"{run.openset}" in errors and problem in errors
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_discovering_into_the_run_links_the_page_from_the_report(run, tmp_path):
    set_threshold(run, 1e9)
    images = new_characters(tmp_path / "images")
    assert main(["discover", "--run", str(run), "--images", str(images)]) == 0
    assert (run / "discover" / "index.html").is_file()
    assert 'href="discover/index.html"' in (run / "report.html").read_text()

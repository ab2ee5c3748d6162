"""The semi-supervised start: the probe refitted on the unlabelled images under the anchored k-means' classes, never
on those the known-character rule rejects."""

import csv
import math

import numpy as np
import pytest
import torch
from synthetic import draw_character, make_dataset, make_unlabeled_folder, tiny_config
from torch.utils.data import DataLoader

from simpsons_classifier import cli
from simpsons_classifier.data.scan import Sample
from simpsons_classifier.models import create_model
from simpsons_classifier.data.split import source_group
from simpsons_classifier.training.anchored_kmeans import (SOURCE_MIN_IMAGES, Clusters, l2_normalise,
                                                          source_standardised)
from simpsons_classifier.training import pseudo_start, trainer
from simpsons_classifier.training.curves import PROBE_EPOCH, UNLABELED_COLUMNS
from simpsons_classifier.training.probe import fit_head, pre_logit_features, probe_images
from simpsons_classifier.training.pseudo_labels import PseudoLabels
from simpsons_classifier.training.pseudo_start import clustered_labels, fit_pseudo_start

DIMENSIONS = 16


def _planted(classes, per_class, seed):
    """Points around one centre per class (fixed centres, ``seed`` draws the spread), and their classes."""
    centres = l2_normalise(np.random.default_rng(0).normal(size=(4, DIMENSIONS)))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(classes), per_class)
    return centres[labels] + 0.05 * rng.normal(size=(len(labels), DIMENSIONS)), labels


def test_each_image_takes_the_class_its_cluster_anchors():
    labelled, labels = _planted([0, 1, 2, 3], per_class=3, seed=1)
    unlabelled, truth = _planted([0, 1, 2, 3], per_class=5, seed=2)
    np.testing.assert_array_equal(clustered_labels(labelled, labels, unlabelled), truth)


def test_a_class_without_labelled_images_is_never_given():
    labelled, labels = _planted([0, 2, 3], per_class=3, seed=1)
    unlabelled, truth = _planted([0, 1, 2, 3], per_class=5, seed=2)
    clustered = clustered_labels(labelled, labels, unlabelled)
    assert set(clustered) <= {0, 2, 3}
    np.testing.assert_array_equal(clustered[truth != 1], truth[truth != 1])


def test_each_source_of_enough_images_takes_the_common_mean_and_spread_and_the_others_stay():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(SOURCE_MIN_IMAGES + 3, DIMENSIONS)) * rng.uniform(0.5, 2, DIMENSIONS)
    sources = np.array(["sprites"] * SOURCE_MIN_IMAGES + ["icons"] * 2 + ["pic_0012"])
    standardised = source_standardised(features, sources)
    sprites = standardised[sources == "sprites"]
    np.testing.assert_allclose(sprites.mean(axis=0), features.mean(axis=0))
    np.testing.assert_allclose(sprites.std(axis=0), features.std(axis=0))
    # feature by feature, the order of the source's images stays: a move and a positive scale
    np.testing.assert_array_equal(np.argsort(sprites, axis=0), np.argsort(features[sources == "sprites"], axis=0))
    np.testing.assert_array_equal(standardised[sources != "sprites"], features[sources != "sprites"])


def test_a_source_whose_features_spread_wider_is_scaled_back():
    """Two sources of the same two classes, one drawn four times as wide: moved to the common mean alone, its
    images stay farther from the class centres than the other's; scaled too, each class sits alike in both."""
    rng = np.random.default_rng(4)
    classes = rng.normal(size=(2, DIMENSIONS))
    narrow = classes[np.repeat([0, 1], 10)] + 0.1 * rng.normal(size=(20, DIMENSIONS))
    wide = 4 * (classes[np.repeat([0, 1], 10)] + 0.1 * rng.normal(size=(20, DIMENSIONS)))
    standardised = source_standardised(np.vstack([narrow, wide]), np.repeat(["narrow", "wide"], 20))
    np.testing.assert_allclose(standardised[:20].std(axis=0), standardised[20:].std(axis=0), rtol=0.5)
    assert np.linalg.norm(standardised[20:30].mean(axis=0) - standardised[:10].mean(axis=0)) < 0.5 * np.linalg.norm(
        classes[0] - classes[1])


def test_a_source_all_its_characters_share_does_not_decide_their_class():
    """Class 0 is labelled only in source a and class 1 only in source b, and the sources lie farther apart than
    the classes: without the sources, source b's images of class 0 go to class 1."""
    rng = np.random.default_rng(3)
    classes = l2_normalise(rng.normal(size=(2, DIMENSIONS)))
    offsets = 3 * l2_normalise(rng.normal(size=(2, DIMENSIONS)))

    def drawn(cls, source, count):
        return classes[cls] + offsets[source] + 0.05 * rng.normal(size=(count, DIMENSIONS))

    labelled, labels = np.vstack([drawn(0, 0, 3), drawn(1, 1, 3)]), np.repeat([0, 1], 3)
    unlabelled = np.vstack([drawn(c, s, 5) for s in (0, 1) for c in (0, 1)])
    truth, unlabelled_sources = np.tile(np.repeat([0, 1], 5), 2), np.repeat(["a", "b"], 10)
    sources = np.concatenate([np.repeat(["a", "b"], 3), unlabelled_sources])
    assert (clustered_labels(labelled, labels, unlabelled) != truth).sum() >= 5
    np.testing.assert_array_equal(clustered_labels(labelled, labels, unlabelled, sources), truth)


def test_a_way_characters_vary_that_the_labelled_images_do_not_show_is_learnt_from_the_unlabelled_ones():
    """The unlabelled images spread far along one direction the labelled ones do not vary along at all: whitened by
    the labelled images alone, that direction mixes the classes; learnt again from each class's central half after
    a first clustering, it counts less, and every image falls to its class."""
    rng = np.random.default_rng(4)
    centres = l2_normalise(rng.normal(size=(4, DIMENSIONS)))
    nuisance = l2_normalise(rng.normal(size=(1, DIMENSIONS)))[0]

    def drawn(per_class, spread):
        labels = np.repeat(np.arange(4), per_class)
        noise = 0.1 * rng.normal(size=(len(labels), DIMENSIONS))
        noise -= np.outer(noise @ nuisance, nuisance)
        return centres[labels] + noise + spread * rng.normal(size=(len(labels), 1)) * nuisance, labels

    labelled, labels = drawn(2, spread=0.0)
    unlabelled, truth = drawn(20, spread=1.0)
    assert (clustered_labels(labelled, labels, unlabelled, whitening_share=0) != truth).sum() >= 8
    np.testing.assert_array_equal(clustered_labels(labelled, labels, unlabelled), truth)


def test_the_central_share_of_a_cluster_is_its_points_nearest_the_centroid():
    clusters = Clusters(assignments=np.array([0, 0, 0, 0, 1, 1, 1]), centroids=np.eye(2), known=2,
                        similarities=np.array([0.9, 0.2, 0.5, 0.7, 0.1, 0.3, 0.8]))
    np.testing.assert_array_equal(clusters.central(0.5), [True, False, False, True, False, True, True])
    assert not clusters.central(0).any()
    assert clusters.central(1).all()


def _loaders(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    labelled = [Sample(path, path.parent.name) for path in sorted(data.rglob("*.png"))]
    classes = sorted({s.label for s in labelled})
    frames = tmp_path / "frames"
    frames.mkdir()
    for c in range(3):
        for v in range(4):
            draw_character(c, 70 + v).save(frames / f"{c}_{v}.png")
    unlabelled = [Sample(path, "") for path in sorted(frames.glob("*.png"))]

    def transform(image):
        return torch.as_tensor(np.asarray(image.resize((32, 32)), dtype=np.float32) / 255).permute(2, 0, 1)

    return (DataLoader(probe_images(labelled, classes, transform), batch_size=16),
            DataLoader(probe_images(unlabelled, None, transform), batch_size=16), len(unlabelled))


def test_images_below_the_known_character_threshold_are_never_used(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet10t", 3).eval()
    labelled_loader, unlabelled_loader, images = _loaders(tmp_path)
    labelled = pre_logit_features(model, labelled_loader, torch.device("cpu"), progress=False)
    fit_head(model, *labelled)
    probe = [p.detach().clone() for p in model.get_classifier().parameters()]

    def refit(*args):
        raise AssertionError("the head was refitted with no unlabelled image")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pseudo_start, "fit_head", refit)
        verdict = fit_pseudo_start(model, *labelled, labelled_loader, unlabelled_loader, math.inf,
                                   torch.device("cpu"), False)
    assert verdict.counts() == (0, images, 0)  # every image rejected: none used, the probe as it was
    for before, after in zip(probe, model.get_classifier().parameters()):
        torch.testing.assert_close(after, before)

    pool, _ = pre_logit_features(model, unlabelled_loader, torch.device("cpu"), progress=False)
    max_logits = torch.as_tensor(pool[:images]) @ probe[0].T + probe[1]
    known_at = float(max_logits.max(dim=1).values.median())
    fitted_on = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pseudo_start, "fit_head", lambda model, features, classes: fitted_on.append(len(classes)))
        verdict = fit_pseudo_start(model, *labelled, labelled_loader, unlabelled_loader, known_at,
                                   torch.device("cpu"), False)
    accepted = max_logits.max(dim=1).values >= known_at
    assert 0 < accepted.sum() < images
    assert torch.equal(verdict.used, accepted) and torch.equal(verdict.rejected, ~accepted)
    assert fitted_on == [len(labelled[1]) + 2 * int(accepted.sum())]  # the accepted images and their mirror images

    verdict = fit_pseudo_start(model, *labelled, labelled_loader, unlabelled_loader, -math.inf,
                               torch.device("cpu"), False)
    assert verdict.counts() == (images, 0, 0)  # every image accepted, and every one labelled
    assert set(verdict.labels.tolist()) <= {0, 1, 2}
    assert not torch.equal(model.get_classifier().weight, probe[0])  # refitted with the unlabelled images


def test_a_run_from_the_probe_reports_the_starts_unlabelled_images_on_its_first_row(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    frames = make_unlabeled_folder(tmp_path / "frames", unreadable=0)  # 4 known characters, 2 the data lacks
    config = tmp_path / "tiny.yaml"
    tiny_config(unlabeled_ratio=2, epochs=1, head_init="probe").save(config)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--unlabeled", str(frames),
                     "--config", str(config)]) == 0
    with open(run / "metrics.csv") as handle:
        start = next(r for r in csv.DictReader(handle) if int(r["epoch"]) == PROBE_EPOCH)
    counts = [int(start[c]) for c in UNLABELED_COLUMNS]
    assert sum(counts) == 18  # each unlabelled image once: used, rejected as unknown or pending
    assert "probe head (epoch 0)" in capsys.readouterr().out


def test_a_refitted_start_that_scores_below_the_probe_is_not_kept(tmp_path, monkeypatch, capsys):
    data = make_dataset(tmp_path / "data")
    frames = tmp_path / "frames"
    frames.mkdir()
    for c in range(4):
        draw_character(c, 60).save(frames / f"frame_{c}.png")

    def start_row(run, *unlabeled):
        config = tmp_path / "tiny.yaml"
        tiny_config(unlabeled_ratio=2, epochs=1, head_init="probe").save(config)
        assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / run), "--config", str(config),
                         *unlabeled]) == 0
        with open(tmp_path / run / "metrics.csv") as handle:
            return next(r for r in csv.DictReader(handle) if int(r["epoch"]) == PROBE_EPOCH)

    passed_sources = []

    def wrecking_start(model, *args):  # a refit that turns the probe's choices upside down
        passed_sources.append(args[-1])
        model.get_classifier().weight.data.neg_()
        model.get_classifier().bias.data.neg_()
        used, rejected, pending = (torch.tensor(mask) for mask in ([1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]))
        return PseudoLabels(torch.zeros(4, dtype=torch.long), used.bool(), rejected.bool(), pending.bool())

    probe = start_row("probe")
    monkeypatch.setattr(trainer, "fit_pseudo_start", wrecking_start)
    kept = start_row("semi", "--unlabeled", str(frames))
    assert "fine-tuning starts from the probe" in capsys.readouterr().out
    assert kept["val_top1"] == probe["val_top1"]  # the probe's head, not the wrecked one
    assert [int(kept[c]) for c in UNLABELED_COLUMNS] == [0, 1, 3]  # none used: the used two count as pending
    labelled_sources, unlabelled_sources = passed_sources[0]  # each file's source, from its name
    assert sorted(unlabelled_sources) == [f"frame_{c}" for c in range(4)]
    assert set(labelled_sources) == {source_group(p) for p in data.rglob("*.png")}

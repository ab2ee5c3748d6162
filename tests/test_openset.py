"""Unknown-character scores, the honest choice among them, and the far-away sets."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import train_tiny_run

from simpsons_classifier.augment.background import BUILTIN_PHOTOS
from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import read_heldout
from simpsons_classifier.data.scan import Sample
from simpsons_classifier.evaluation import evaluate_run
from simpsons_classifier.evaluation.evaluate import like_validation, stratified_sample
from simpsons_classifier.evaluation.far_ood import FAR_PHOTOS, far_ood_sets, far_selection_set, folder_set
from simpsons_classifier.evaluation.ood_scores import SCORE_NAMES, FeatureBank, fit_score, fit_scores
from simpsons_classifier.evaluation.openset import calibrate, separation, split_heldout_classes, tied_with_best
from simpsons_classifier.evaluation.results import EvalResult, Separation
from simpsons_classifier.evaluation.run_model import ModelOutputs

CLASSES, DIMS, PER_CLASS = 6, 48, 40
"""Class c fires feature dimensions 4c..4c+3; the dimensions from 4 * CLASSES up are silent in training."""


def planted_bank(generator: torch.Generator) -> FeatureBank:
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    features = 0.05 * torch.rand(len(labels), DIMS, generator=generator)
    for c in range(CLASSES):
        features[labels == c, 4 * c:4 * c + 4] += 1 + 0.2 * torch.rand(PER_CLASS, 4, generator=generator)
    means = torch.stack([features[labels == c].mean(0) for c in range(CLASSES)])
    return FeatureBank(features, labels, [f"c{c}" for c in range(CLASSES)], 4 * means, torch.zeros(CLASSES))


def outputs(bank: FeatureBank, features: torch.Tensor) -> ModelOutputs:
    logits = features @ bank.head_weight.T + bank.head_bias
    return ModelOutputs(features, logits, torch.full((len(features),), -1))


def test_every_score_ranks_a_planted_outlier_below_known_images():
    generator = torch.Generator().manual_seed(0)
    bank = planted_bank(generator)
    known = planted_bank(generator).features[::4]  # fresh images of the known classes
    outlier = 0.05 * torch.rand(3, DIMS, generator=generator)
    outlier[:, 4 * CLASSES:] += 1 + 0.2 * torch.rand(3, DIMS - 4 * CLASSES, generator=generator)  # unseen features
    for name in SCORE_NAMES:
        score = fit_score(name, bank)
        known_scores, outlier_scores = (score(f, outputs(bank, f).logits) for f in (known, outlier))
        assert outlier_scores.max() < known_scores.min(), name


def test_the_knn_veto_keeps_msp_near_the_training_features_and_sinks_the_rest():
    generator = torch.Generator().manual_seed(2)
    bank = planted_bank(generator)
    near = outputs(bank, planted_bank(generator).features)  # fresh images of the known classes
    far = outputs(bank, 0.05 * torch.rand(5, DIMS, generator=generator) + torch.linspace(0, 1, DIMS))
    msp, knn, vetoed = (fit_score(name, bank) for name in ("msp", "knn", "msp_knn"))
    kept = vetoed(near.features, near.logits) == msp(near.features, near.logits)
    assert kept.float().mean() > 0.9  # the veto's floor lets through all but the outskirts of the training features
    sunk = ~kept
    assert torch.allclose(vetoed(near.features, near.logits)[sunk], msp(near.features, near.logits)[sunk] - 1)
    assert knn(near.features, near.logits)[sunk].max() < knn(near.features, near.logits)[kept].min()
    assert torch.allclose(vetoed(far.features, far.logits), msp(far.features, far.logits) - 1)
    assert vetoed(far.features, far.logits).max() < vetoed(near.features, near.logits)[kept].min()


def test_centred_knn_compares_images_by_what_sets_them_apart_not_by_what_all_of_them_share():
    """Post-ReLU features share one large positive direction. Centred k-NN is measured from the training features'
    mean, so adding the same vector to every feature, training and new alike, changes none of its scores; plain
    k-NN's cosine moves with it."""
    generator = torch.Generator().manual_seed(3)
    bank = planted_bank(generator)
    fresh = torch.cat([planted_bank(generator).features[::8], torch.rand(4, DIMS, generator=generator)])
    shift = 3 * torch.rand(DIMS, generator=generator)
    shifted_bank = FeatureBank(bank.features + shift, bank.labels, bank.classes, bank.head_weight, bank.head_bias)
    logits = outputs(bank, fresh).logits
    for name, unmoved in (("centred_knn", True), ("knn", False)):
        score, shifted_score = fit_score(name, bank), fit_score(name, shifted_bank)
        assert torch.allclose(score(fresh, logits), shifted_score(fresh + shift, logits), atol=1e-5) == unmoved, name


def test_feature_scores_need_the_bank_and_say_how_to_get_it():
    assert set(fit_scores(None)) == {"msp", "max_logit", "energy"}
    with pytest.raises(ValueError, match="simpsons evaluate"):
        fit_score("knn", None)
    with pytest.raises(ValueError, match="unknown open-set score 'nope'"):
        fit_score("nope", None)


def test_a_score_that_cannot_be_fitted_is_left_out_with_a_warning_and_the_rule_chosen_among_the_rest(monkeypatch):
    """ViM's float32 eigendecomposition can fail on a dozen training images' features: the run goes on."""
    from pytorch_ood.detector import ViM

    def fail_to_converge(self, features, labels):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(ViM, "fit_features", fail_to_converge)
    generator = torch.Generator().manual_seed(0)
    bank = planted_bank(generator)
    with pytest.warns(UserWarning, match=r"'vim' is left out: it cannot be fitted on the features of 240 training"):
        scores = fit_scores(bank)
    assert set(scores) == set(SCORE_NAMES) - {"vim"}
    known = outputs(bank, planted_bank(generator).features)
    selection = outputs(bank, 0.05 * torch.rand(20, DIMS, generator=generator) + torch.linspace(0, 1, DIMS))
    calibration = calibrate(known, scores, selection, ["held_a"])
    assert set(calibration.candidates) == set(scores) and calibration.score in scores


def test_without_held_out_characters_msp_with_the_knn_veto_is_kept_and_max_logit_without_a_bank():
    generator = torch.Generator().manual_seed(0)
    bank = planted_bank(generator)
    known = outputs(bank, planted_bank(generator).features)
    assert calibrate(known, fit_scores(bank)).score == "msp_knn"
    assert calibrate(known, fit_scores(None)).score == "max_logit"


def test_the_bank_survives_a_round_trip(tmp_path):
    bank = planted_bank(torch.Generator().manual_seed(1))
    bank.write(tmp_path / "features.pt")
    read = FeatureBank.read(tmp_path / "features.pt")
    assert read.classes == bank.classes and torch.equal(read.labels, bank.labels)
    assert torch.allclose(read.features, bank.features, atol=1e-3) and torch.equal(read.head_weight, bank.head_weight)


def test_separation_measures():
    known, unknown = np.array([3.0, 4.0, 5.0, 6.0]), np.array([0.0, 1.0, 2.0])
    assert separation(known, unknown) == Separation(1.0, 0.0)
    swapped = separation(unknown, known)
    assert swapped.auroc == 0.0 and swapped.fpr_at_95_tpr == 1.0


def test_the_score_is_chosen_on_the_selection_classes_alone():
    """Selection images that only energy separates: energy is chosen, whatever other classes would say."""
    generator = torch.Generator().manual_seed(0)
    known_logits = 5 + 0.3 * torch.randn(200, 10, generator=generator)  # every logit high: large energy
    spike = torch.zeros(100, 10)
    spike[:, 0] = 6 + 0.3 * torch.randn(100, generator=generator)  # one logit higher, energy lower
    known = ModelOutputs(torch.zeros(200, DIMS), known_logits, torch.zeros(200, dtype=torch.long))
    selection = ModelOutputs(torch.zeros(100, DIMS), spike, torch.full((100,), -1))
    calibration = calibrate(known, fit_scores(None), selection, ["held_a"])
    assert calibration.score == "energy" and calibration.selection_classes == ["held_a"]
    assert calibration.candidates["energy"].auroc > 0.99 > calibration.candidates["max_logit"].auroc
    accepted = (torch.logsumexp(known_logits, 1) >= calibration.threshold).float().mean().item()
    assert 0.95 <= accepted <= 0.96 and calibration.val_accepted == pytest.approx(accepted)
    assert calibrate(known, fit_scores(None)).score == "max_logit"  # nothing unknown to choose by


def _by_column(columns: dict[str, int]):
    """Scores that read one feature column each, so a test sets every score of every image."""
    return {name: (lambda features, logits, c=c: features[:, c]) for name, c in columns.items()}


def _outputs_of(values: list[tuple[float, float]]) -> ModelOutputs:
    features = torch.tensor(values, dtype=torch.float32)
    return ModelOutputs(features, torch.zeros(len(values), 3), torch.zeros(len(values), dtype=torch.long))


def test_near_ties_go_to_the_score_that_rejects_far_away_images():
    rng = np.random.default_rng(0)
    known_values = rng.normal(1.0, 0.5, (200, 1)).repeat(2, axis=1)  # "a" and "b" agree on known images
    near_values = rng.normal(0.0, 0.5, (100, 1)).repeat(2, axis=1)
    near_values[:, 1] += 0.05  # "b" separates near images a hair worse: within one standard error
    far_values = np.c_[rng.normal(1.0, 0.5, 100), rng.normal(-3.0, 0.5, 100)]  # only "b" rejects them
    known, near, far = (_outputs_of(v.tolist()) for v in (known_values, near_values, far_values))
    scores = _by_column({"a": 0, "b": 1})
    calibration = calibrate(known, scores, near, ["held_a"], far)
    assert calibration.candidates["a"].auroc > calibration.candidates["b"].auroc
    assert calibration.tied == ["a", "b"] and calibration.score == "b" and calibration.selection_far_images == 100
    assert calibrate(known, scores, near, ["held_a"]).score == "a"  # no far-away images: the best near AUROC
    near_values[:, 1] += 1.0  # now "b" is clearly worse on near images: far-away images do not buy it back
    calibration = calibrate(known, scores, _outputs_of(near_values.tolist()), ["held_a"], far)
    assert calibration.tied == ["a"] and calibration.score == "a"


def test_the_tie_margin_shrinks_with_more_images():
    candidates = {"a": Separation(0.90, 0.5), "b": Separation(0.88, 0.5)}
    assert tied_with_best(candidates, 100, 50) == ["a", "b"]
    assert tied_with_best(candidates, 100_000, 50_000) == ["a"]


@pytest.mark.parametrize("count", [0, 1, 2, 5, 10])
def test_held_out_classes_split_into_disjoint_halves(count):
    classes = [f"k{i}" for i in range(count)]
    selection, report = split_heldout_classes(classes, seed=3)
    assert not set(selection) & set(report) and sorted(selection + report) == classes
    assert len(report) >= len(selection) and (count < 2 or selection)
    assert split_heldout_classes(classes, seed=3) == (selection, report)


def test_far_away_photos_are_never_training_backgrounds_and_the_sets_are_cached(tmp_path):
    assert not set(FAR_PHOTOS) & set(BUILTIN_PHOTOS)
    sets = far_ood_sets(tmp_path)
    assert set(sets) == {"photos", "noise"} and all(len(samples) >= 50 for samples in sets.values())
    first = {name: [s.path for s in samples] for name, samples in sets.items()}
    assert {name: [s.path for s in samples] for name, samples in far_ood_sets(tmp_path).items()} == first


def test_the_far_away_images_a_score_is_chosen_on_are_never_reported(tmp_path):
    reported = [s.path for samples in far_ood_sets(tmp_path).values() for s in samples]
    selection = [s.path for s in far_selection_set(tmp_path)]
    assert len(selection) >= 50 and not set(selection) & set(reported)
    reported_pixels = {np.asarray(Image.open(path)).tobytes() for path in reported}
    assert not [path for path in selection if np.asarray(Image.open(path)).tobytes() in reported_pixels]


def test_a_far_folder_keeps_its_readable_images_and_an_empty_one_is_refused(tmp_path):
    folder = tmp_path / "cartoons"
    folder.mkdir()
    with pytest.raises(ValueError, match="no readable image"):
        folder_set(folder)
    (folder / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    assert [s.path for s in folder_set(folder)] == [str(folder / "a.png")]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        folder_set(tmp_path / "missing")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Six synthetic characters, two held out: one to choose the score on, one to report."""
    return train_tiny_run(tmp_path_factory.mktemp("openset"), classes=6, holdout_classes=2)


def test_the_reported_classes_are_never_those_the_score_was_chosen_on(run):
    stored = json.loads((run / "openset.json").read_text())
    figures = EvalResult.read(run / "eval" / "metrics.json").openset
    heldout = {s.label for s in read_heldout(run)}
    assert len(stored["selection_classes"]) == 1 and len(figures.near_classes) == 1
    assert set(stored["selection_classes"]) | set(figures.near_classes) == heldout
    assert not set(stored["selection_classes"]) & set(figures.near_classes)
    assert set(stored["candidates"]) == set(SCORE_NAMES) and stored["score"] == figures.chosen
    assert set(stored["far_candidates"]) == set(SCORE_NAMES) and stored["score"] in stored["tied"]
    assert figures.near_images == sum(s.label in figures.near_classes for s in read_heldout(run))


def test_evaluate_keeps_the_stored_rule_unless_asked_to_choose_again(run, tmp_path):
    stored = json.loads((run / "openset.json").read_text())
    (run / "openset.json").write_text(json.dumps({**stored, "score": "energy", "threshold": -1e9}))
    kept = evaluate_run(run, out_dir=tmp_path / "kept", progress=False).openset
    assert (kept.chosen, kept.threshold, kept.known_accepted) == ("energy", -1e9, 1.0)
    chosen_again = evaluate_run(run, out_dir=tmp_path / "again", progress=False, recalibrate=True).openset
    rewritten = json.loads((run / "openset.json").read_text())
    assert rewritten["score"] == chosen_again.chosen == stored["score"]
    assert rewritten["threshold"] == chosen_again.threshold == pytest.approx(stored["threshold"], abs=1e-3)
    with pytest.raises(ValueError, match="own validation split"):
        evaluate_run(run, tta=True, recalibrate=True)


def test_with_a_group_split_held_out_characters_are_compared_in_the_validation_sources():
    heldout = [Sample(f"/d/x/{source}__{i}.png", "x") for source in ("gen1", "dreamworld") for i in range(3)]
    val = [Sample("/d/a/dreamworld__0.png", "a"), Sample("/d/b/dreamworld__1.png", "b")]
    assert like_validation(heldout, val, Config(split="group")) == heldout[3:]
    assert like_validation(heldout, val, Config(split="random")) == heldout
    assert like_validation(heldout[:3], val, Config(split="group")) == heldout[:3]  # none alike: all kept


def test_the_feature_bank_sample_keeps_every_class_in_proportion_even_the_rarest():
    samples = [Sample(f"{label}_{i}.png", label) for label, count in (("homer", 3000), ("bart", 900), ("kang", 2))
               for i in range(count)]
    kept = stratified_sample(samples, 1000)
    counts = {label: sum(s.label == label for s in kept) for label in ("homer", "bart", "kang")}
    assert counts == {"homer": 769, "bart": 231, "kang": 1}
    assert kept == [s for s in samples if s in kept]  # in the order given

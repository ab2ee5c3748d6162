"""Semi-supervised training from an unlabelled folder (FixMatch): which images are pseudo-labelled, from which view
and for which, the counts a run reports, exact resume, and bad unlabelled folders."""

import csv
import os
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from interrupts import ctrl_c_at_step
from synthetic import make_dataset, make_unlabeled_folder, tiny_config
from torch.utils.data import DataLoader
from torchrun import PROCESSES, torchrun_train

from simpsons_classifier import cli
from simpsons_classifier.augment.pipeline import BatchPipeline
from simpsons_classifier.augment.recipe import WeakAndStrong
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.run_data import prepare_run_data, read_unlabeled, repoint_unlabeled
from simpsons_classifier.data.scan import DatasetError, Sample
from simpsons_classifier.evaluation.ood_scores import fit_scores
from simpsons_classifier.evaluation.openset import calibrate
from simpsons_classifier.evaluation.run_model import ModelOutputs
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import checkpoint, trainer
from simpsons_classifier.training.curves import CURVES_DPI, PROBE_EPOCH, UNLABELED_COLUMNS, unlabeled_epochs
from simpsons_classifier.training.distributed import Context
from simpsons_classifier.training.pseudo_labels import (
    SelfAdaptiveThreshold,
    known_threshold,
    select_pseudo_labels,
)
from simpsons_classifier.training.sampling import CyclingSampler

STEPS_PER_EPOCH = 3
"""make_dataset's 4 classes x 10 images, 28 of them training, in batches of 8 (the last one dropped)."""


def _semi_config(**overrides):
    return tiny_config(unlabeled_ratio=2, **overrides)


def test_only_confident_images_accepted_as_known_are_pseudo_labelled_and_the_counts_add_up():
    logits = torch.tensor([
        [9.0, 0.0, 0.0],  # known (max-logit 9 >= 5) and confident: used, class 0
        [0.0, 0.0, 6.0],  # known and confident: used, class 2
        [5.5, 5.0, 0.0],  # known, not confident (softmax 0.62): pending
        [4.0, -9.0, -9.0],  # confident (softmax ~1) but max-logit 4 < 5: rejected as unknown
        [0.1, 0.0, 0.0],  # neither: rejected
    ])
    pseudo = select_pseudo_labels(logits, confidence=0.95, known_at=5.0)
    assert pseudo.used.tolist() == [True, True, False, False, False]
    assert pseudo.labels[pseudo.used].tolist() == [0, 2]
    assert pseudo.rejected.tolist() == [False, False, False, True, True]
    assert pseudo.pending.tolist() == [False, False, True, False, False]
    assert pseudo.counts() == (2, 2, 1) and sum(pseudo.counts()) == len(logits)


CLASSES = 3


class _FirstPixelClass(torch.nn.Module):
    """Classifies an image, confidently, as the class its first pixel's value names."""

    def forward(self, images):
        return 10 * torch.nn.functional.one_hot(images[:, 0, 0, 0].round().long(), CLASSES).float()


def test_pseudo_labels_come_from_each_images_weak_view_and_train_the_strong_view_of_the_same_image(tmp_path,
                                                                                                    monkeypatch):
    """Image i's weak view reads as class i % 3, its strong view as class 2 - i % 3, so a label taken from the
    wrong view or the wrong image shows. Through the unlabelled DataLoader (shuffled by its sampler), the batch
    pipeline and ``train_on_batch``, each pseudo-label is the weak view's class of the image whose strong view
    trains on it."""
    samples = []
    for i in range(12):
        path = tmp_path / f"frame_{i:02d}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        samples.append(Sample(path, ""))

    def weak(image):
        return torch.full((3, 4, 4), float(image.getpixel((0, 0))[0] % CLASSES))

    def strong(image):
        return torch.full((3, 4, 4), float(CLASSES - 1 - image.getpixel((0, 0))[0] % CLASSES))

    config = _semi_config(pseudo_label_threshold=0.9)
    pipeline = BatchPipeline(config, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), CLASSES, torch.device("cpu"))
    unlabeled = DataLoader(ImageDataset(samples, None, WeakAndStrong(weak, strong)), batch_size=6,
                           sampler=CyclingSampler(len(samples), 12, seed=0, epoch=0), collate_fn=pipeline.collate_views)
    labelled = [(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))] * 2
    steps = []
    monkeypatch.setattr(trainer, "train_step", lambda state, images, targets, config, strong=None, pseudo=None:
                        steps.append((strong, pseudo)) or 0.0)
    teacher = _FirstPixelClass()
    state = SimpleNamespace(known_at=5.0, adaptive_bar=None, evaluated=teacher, model=None)
    for batch in pipeline.batches(labelled, unlabeled):
        trainer.train_on_batch(state, batch, config)
    assert len(steps) == 2
    for strong_views, pseudo in steps:
        assert pseudo.used.all()
        strong_class = strong_views[:, 0, 0, 0].round().long()
        assert torch.equal(pseudo.labels, CLASSES - 1 - strong_class)  # the same image's weak view's class
        assert not torch.equal(pseudo.labels, strong_class)


def test_an_unknown_character_below_the_open_set_threshold_is_never_pseudo_labelled():
    torch.manual_seed(0)
    val_logits = torch.randn(200, 5) + 6 * torch.nn.functional.one_hot(torch.randint(5, (200,)), 5)
    threshold = known_threshold(val_logits.max(dim=1).values)
    # the rule the run stores after training: same share of known validation images, same threshold
    outputs = ModelOutputs(torch.zeros(200, 2), val_logits, torch.zeros(200, dtype=torch.long))
    assert threshold == pytest.approx(calibrate(outputs, fit_scores(None)).threshold)
    unknown = torch.tensor([[threshold - 0.01, -50.0, -50.0, -50.0, -50.0]])  # softmax 1.0, yet below the rule
    pseudo = select_pseudo_labels(unknown, confidence=0.5, known_at=threshold)
    assert pseudo.rejected.all() and not pseudo.used.any()
    assert select_pseudo_labels(unknown + 0.02, confidence=0.5, known_at=threshold).used.all()


def test_per_class_bars_let_each_class_through_at_its_own_confidence():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])  # softmax top 0.91, 0.91, 0.58
    pseudo = select_pseudo_labels(logits, torch.tensor([0.95, 0.5, 0.5]), known_at=0.5)
    assert pseudo.used.tolist() == [False, True, True] and pseudo.pending.tolist() == [True, False, False]


def test_the_self_adaptive_bars_follow_the_known_images_confidence_and_are_lower_for_rarely_predicted_classes():
    bars = SelfAdaptiveThreshold(num_classes=3)
    assert bars.thresholds().tolist() == [0, 0, 0]  # before any step, every image accepted as known trains
    confident = torch.tensor([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    unknown = torch.tensor([[0.1, 0.0, 0.0]])  # below the known-character bar: must not pull the bars down
    statistics = SelfAdaptiveThreshold.step_statistics(torch.cat([confident, unknown]), known_at=1.0)
    bars.update(statistics)
    probability = torch.softmax(confident, dim=1)
    top = probability.max(dim=1).values.mean()
    per_class = probability.mean(dim=0)
    # Bias-corrected: after one step the averages are that step's means, not 0.1 % of them.
    assert torch.allclose(bars.thresholds(), top * per_class / per_class.max())
    assert bars.thresholds()[0] > bars.thresholds()[1] > bars.thresholds()[2]
    unsure = SelfAdaptiveThreshold.step_statistics(torch.zeros(4, 3), known_at=-1.0)  # softmax 1/3 everywhere
    for _ in range(3000):
        bars.update(unsure)
    assert torch.allclose(bars.thresholds(), torch.full((3,), 1 / 3), atol=0.02)  # a less sure model, lower bars
    before = bars.state_dict()
    bars.update(SelfAdaptiveThreshold.step_statistics(unknown, known_at=1.0))  # no image accepted: no change
    assert bars.steps == before["steps"] and torch.equal(bars.confidence, before["confidence"])


def test_the_unlabelled_draws_share_every_image_out_between_processes_and_epochs():
    one = list(CyclingSampler(10, 25, seed=0, epoch=3))
    assert len(one) == 25 and sorted(one[:10]) == list(range(10)) and sorted(one[10:20]) == list(range(10))
    assert one == list(CyclingSampler(10, 25, seed=0, epoch=3)) != list(CyclingSampler(10, 25, seed=0, epoch=4))
    halves = [list(CyclingSampler(10, 5, seed=0, epoch=3, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(10))


@pytest.mark.slow  # the run is also evaluated and reported, as every train command ends
def test_train_unlabeled_through_the_cli_reports_the_counts_in_metrics_csv(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    unlabeled = make_unlabeled_folder(tmp_path / "frames", unreadable=2)
    config = tmp_path / "tiny.yaml"
    _semi_config(epochs=2).save(config)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--unlabeled", str(unlabeled),
                     "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert f"unlabelled: 18 images from {unlabeled}; 2 files skipped (see {run / 'unlabeled_skipped.csv'})" in printed
    assert "pseudo-labelled" in printed and "rejected as unknown" in printed
    with open(run / "unlabeled_skipped.csv") as handle:
        assert sorted(os.path.basename(r["path"]) for r in csv.DictReader(handle)) == ["broken_0.jpg", "broken_1.jpg"]
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for row in rows:
        counts = [int(row[c]) for c in UNLABELED_COLUMNS]
        assert sum(counts) == STEPS_PER_EPOCH * 2 * 8  # every image drawn is used, rejected or pending
        assert counts[1] > 0  # a max-logit threshold accepting 95 % of validation images rejects some
    html = (run / "report.html").read_text()  # the same counts, epoch by epoch, in the report
    assert f"images of <code>{unlabeled}</code>" in html
    for epoch, row in enumerate(rows, start=1):
        drawn = STEPS_PER_EPOCH * 2 * 8
        cells = "".join(f'<td class="num">{row[c]} ({100 * int(row[c]) / drawn:.0f} %)</td>' for c in UNLABELED_COLUMNS)
        assert f'<tr><td class="num">{epoch}</td><td class="num">{drawn}</td>{cells}</tr>' in html
    with Image.open(run / "curves.png") as curves:  # a third panel: the draws, stacked
        assert curves.width == 16 * CURVES_DPI
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["unlabeled_dir"] == str(unlabeled)


def test_a_run_whose_unlabelled_folder_moved_resumes_with_its_new_place(tmp_path, capsys, monkeypatch):
    data = make_dataset(tmp_path / "data")
    unlabeled = make_unlabeled_folder(tmp_path / "frames")
    config = tmp_path / "tiny.yaml"
    _semi_config(epochs=1).save(config)
    run = tmp_path / "run"
    ctrl_c_at_step(monkeypatch, 1)
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--unlabeled", str(unlabeled),
                     "--config", str(config)]) == 130
    monkeypatch.undo()
    moved = unlabeled.rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert f"unlabelled folder {unlabeled} is not there any more" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run), "--unlabeled", str(tmp_path)]) == 2  # not the folder it was
    assert "holds none of the run's 18 unlabelled images" in capsys.readouterr().err

    assert cli.main(["train", "--resume", str(run), "--unlabeled", str(moved)]) == 0
    assert f"unlabelled folder moved: {unlabeled} -> {moved} (18 images)" in capsys.readouterr().out
    assert read_unlabeled(run)[0].path.startswith(str(moved))
    assert checkpoint.read(run / "last.pt")["epoch"] == 1


def test_an_unlabelled_folder_for_a_run_trained_without_one_is_refused(tmp_path):
    run = RunDir(tmp_path / "run").make()
    with pytest.raises(DatasetError, match="trained without an unlabelled folder"):
        repoint_unlabeled(run, tmp_path)


def test_pseudo_labelled_images_train_the_model(tmp_path, monkeypatch):
    """With every image accepted as known used (4 classes: every softmax peaks at 0.25 or more), the unlabelled loss moves the weights: a run differs from the same
    run with ``unlabeled_weight: 0``."""
    data = make_dataset(tmp_path / "data")
    unlabeled = make_unlabeled_folder(tmp_path / "frames", unreadable=0)
    used = []
    real = trainer.train_step

    def counting(state, images, targets, config, strong=None, pseudo=None):
        used.append(int(pseudo.used.sum()))
        return real(state, images, targets, config, strong, pseudo)

    monkeypatch.setattr(trainer, "train_step", counting)
    runs = {}
    for weight in (0.0, 1.0):
        config = _semi_config(epochs=1, unlabeled_dir=str(unlabeled), pseudo_label_threshold=0.25,
                              unlabeled_weight=weight)
        runs[weight] = checkpoint.read(trainer.train(config, data, tmp_path / f"w{weight}", progress=False) / "last.pt")
    assert sum(used) > 0
    assert any(not torch.equal(runs[0.0]["model"][k], v) for k, v in runs[1.0]["model"].items())


@pytest.mark.slow
def test_two_processes_share_the_unlabelled_draws_and_report_their_sum(tmp_path):
    data = make_dataset(tmp_path / "data")
    unlabeled = make_unlabeled_folder(tmp_path / "frames")
    config = _semi_config(epochs=2)
    result = torchrun_train(data, tmp_path / "run", config, 29519, "--unlabeled", str(unlabeled))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 2/2") == 1 and "pseudo-labelled" in result.stdout  # only rank 0 prints
    steps = trainer._steps_per_epoch(28, config, Context(rank=0, world_size=PROCESSES, device=torch.device("cpu")))
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # every image drawn by either process is counted once, in rank 0's row
        assert sum(int(row[c]) for c in UNLABELED_COLUMNS) == PROCESSES * steps * config.unlabeled_ratio * 8
    assert checkpoint.read(tmp_path / "run" / "last.pt")["epoch"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("workers, threshold", [(0, 0.25), (2, None)])
def test_resume_mid_epoch_with_an_unlabelled_folder_ends_with_the_same_weights(tmp_path, monkeypatch, workers,
                                                                               threshold):
    data = make_dataset(tmp_path / "data")
    unlabeled = make_unlabeled_folder(tmp_path / "frames")
    config = _semi_config(epochs=2, unlabeled_dir=str(unlabeled), num_workers=workers, mix_prob=1.0,
                          pseudo_label_threshold=threshold)
    straight = trainer.train(config, data, tmp_path / "straight", progress=False)

    ctrl_c_at_step(monkeypatch, STEPS_PER_EPOCH + 1)  # during the second step of the second epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.train(config, data, tmp_path / "stopped", progress=False)
    stopped = checkpoint.read(tmp_path / "stopped" / "last.pt")
    assert stopped["progress"]["batches"] == 2 and stopped["known_at"] is not None
    assert (stopped["adaptive_bar"] is None) == (threshold is not None)  # the bars resume with the weights
    monkeypatch.undo()
    trainer.resume(tmp_path / "stopped", progress=False)

    a, b = checkpoint.read(straight / "last.pt"), checkpoint.read(tmp_path / "stopped" / "last.pt")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    with open(straight / "metrics.csv") as one, open(tmp_path / "stopped" / "metrics.csv") as other:
        columns = ("train_loss", *UNLABELED_COLUMNS)
        assert ([[r[c] for c in columns] for r in csv.DictReader(one)]
                == [[r[c] for c in columns] for r in csv.DictReader(other)])


def test_timing_steps_for_a_budget_leaves_no_trace_in_the_run(tmp_path):
    """A budget that keeps the config's epochs ends with the weights of a run without one: the timed steps are
    undone, FreeMatch's per-class bars included."""
    data = make_dataset(tmp_path / "data")
    config = _semi_config(epochs=2, unlabeled_dir=str(make_unlabeled_folder(tmp_path / "frames")),
                          pseudo_label_threshold=None)
    plain = trainer.train(config, data, tmp_path / "plain", progress=False)
    budgeted = trainer.train(config, data, tmp_path / "budgeted", progress=False, budget_seconds=3600)
    a, b = checkpoint.read(plain.last), checkpoint.read(budgeted.last)
    assert b["epoch"] == 2
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["adaptive_bar"].keys() == b["adaptive_bar"].keys()
    for key, value in a["adaptive_bar"].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["adaptive_bar"][key])), key


@pytest.mark.parametrize("make, problem", [
    (lambda folder: None, "does not exist or is not a folder"),
    (lambda folder: folder.mkdir(), "holds no files"),
    (lambda folder: make_unlabeled_folder(folder, known=(), unknown=(), unreadable=2), "no readable image"),
])
def test_a_missing_empty_or_unreadable_unlabelled_folder_is_one_error_naming_it(tmp_path, capsys, make, problem):
    data = make_dataset(tmp_path / "data", classes=2, per_source=1)
    folder = tmp_path / "frames"
    make(folder)
    assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--unlabeled", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and f"unlabelled folder {folder}" in error and problem in error


def test_an_unlabelled_folder_holding_the_dataset_never_gives_the_validation_images_to_training(tmp_path):
    data = make_dataset(tmp_path / "data", classes=4, per_source=2)
    run = tmp_path / "run"
    run.mkdir()
    split = prepare_run_data(_semi_config(unlabeled_dir=str(data)), data, run, progress=False).split
    val = {os.path.realpath(s.path) for s in split.val}
    used = {os.path.realpath(s.path) for s in read_unlabeled(run)}
    with open(RunDir(run).unlabeled_skipped) as handle:
        left_out = {os.path.realpath(row["path"]) for row in csv.DictReader(handle)
                    if row["reason"] == "a validation image of this run"}
    assert val and used and not used & val
    assert left_out == val
    assert used == {os.path.realpath(s.path) for s in split.train}


def test_the_unlabelled_keys_are_validated_by_name():
    from simpsons_classifier.config import Config, ConfigError

    for bad in ("unlabeled_ratio=0", "pseudo_label_threshold=1.5", "unlabeled_weight=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            Config.load(overrides=[bad])
    with pytest.raises(DatasetError, match="unlabelled folder"):
        from simpsons_classifier.data.scan import scan_unlabeled

        scan_unlabeled("/nonexistent/frames", progress=False)


def test_the_unlabelled_draws_per_epoch_leave_out_the_starting_head_and_the_weight_ensemble():
    counts = dict(zip(UNLABELED_COLUMNS, (6, 2, 8)))
    rows = [{"epoch": epoch, **counts} for epoch in (PROBE_EPOCH, 0, 1, 2)]  # 2 epochs, then the ensemble
    epochs = unlabeled_epochs(rows, epochs=2)
    assert [e.epoch for e in epochs] == [1, 2]  # counted from 1, as the curves and the console count them
    assert (epochs[0].drawn, epochs[0].share(epochs[0].pending)) == (16, 0.5)
    assert unlabeled_epochs([{"epoch": 0, "val_top1": 0.5}], epochs=2) == []  # no unlabelled folder

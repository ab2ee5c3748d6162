"""The default recipe: step schedule, unfreeze point as a fraction, scaled learning rate, EMA horizon, the probe
fitted on mirrored images too and scored as epoch 0, sizing a run to a budget, and class-balanced sampling."""

import csv
import warnings
from collections import Counter

import pytest
import torch
from synthetic import make_dataset, tiny_config

from simpsons_classifier.config import Config, ConfigError
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.training import budget, checkpoint, trainer
from simpsons_classifier.training.budget import PassTimes, epochs_within, finishing_seconds, parse_budget
from simpsons_classifier.training.probe import pre_logit_features
from simpsons_classifier.training.sampling import BalancedSampler, should_balance
from simpsons_classifier.training.schedule import WarmupCosineSchedule, active_stages, warmup_cosine
from simpsons_classifier.training.trainer import train


def test_learning_rate_warms_up_linearly_then_decays_to_zero_by_steps():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=0.1)
    schedule = WarmupCosineSchedule(optimizer, total_steps=100, warmup_steps=10)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()
    assert rates[0] == pytest.approx(0.01) and rates[9] == pytest.approx(0.1)  # linear warm-up to the peak
    assert all(a < b for a, b in zip(rates[:10], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # then only down
    assert rates[55] == pytest.approx(0.05, abs=0.002) and rates[-1] < 0.001
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)


def test_a_skipped_first_step_still_advances_the_schedule_without_a_warning():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=0.1)
    schedule = WarmupCosineSchedule(optimizer, total_steps=100, warmup_steps=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schedule.after_step()  # the first step was skipped: no optimizer.step() before it
    assert caught == []
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


def test_unfreeze_point_is_a_fraction_of_the_run():
    def first_unfrozen(config):
        return next(e for e in range(config.epochs) if "last_stage" in active_stages(config, e))

    assert first_unfrozen(Config(epochs=3)) == 0  # a short run still fine-tunes the last stage throughout
    assert first_unfrozen(Config(epochs=8)) == 1
    assert first_unfrozen(Config(epochs=25)) == 5  # the reference's epoch 5 of 25
    assert first_unfrozen(Config(epochs=25, unfreeze_fraction=None, unfreeze_epoch=7)) == 7
    assert first_unfrozen(Config.load("configs/reference.yaml")) == 5
    with pytest.raises(ConfigError, match="unfreeze_fraction"):
        Config(unfreeze_fraction=1.5)


def test_learning_rate_scales_with_the_batch_and_ema_follows_the_steps():
    assert Config(batch_size=64).head_lr == pytest.approx(2 * Config(batch_size=32).head_lr)
    assert Config(batch_size=32).head_lr == pytest.approx(2e-4)
    assert Config(batch_size=64, lr=1e-3).head_lr == 1e-3  # a given rate is used as it is
    short, long = Config().ema_decay_for(200), Config().ema_decay_for(20_000)
    assert short == pytest.approx(0.95) and long == pytest.approx(0.9995) and short < long
    assert Config(ema_decay=0.999).ema_decay_for(200) == 0.999


def test_the_probe_head_is_scored_as_epoch_0_and_kept_when_fine_tuning_makes_things_worse(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=3)

    def wrecking_epoch(state, batches, epoch, config, *args, **kwargs):
        with torch.no_grad():  # fine-tuning gone wrong: every class's row moved to the next class
            for tensor in (state.model.get_classifier().weight, state.model.get_classifier().bias):
                tensor.copy_(tensor.roll(1, dims=0))
        return 9.9

    monkeypatch.setattr(trainer, "train_one_epoch", wrecking_epoch)
    run = train(tiny_config(epochs=2, head_init="probe", ema_decay=0.0, wise_alpha=1.0), data, tmp_path / "run",
                progress=False)
    with open(run.metrics) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["-1", "0", "1"]
    probe_top1 = float(rows[0]["val_top1"])
    assert probe_top1 > 1 / 3 and all(float(r["val_top1"]) < probe_top1 for r in rows[1:])
    best = checkpoint.read(run.best)
    assert best["epoch"] == -1  # the probe's weights, not the wrecked ones
    assert checkpoint.read(run.last)["best_top1"] == pytest.approx(probe_top1)


def test_the_probe_head_is_fitted_on_each_training_image_and_its_mirror_image(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=3)
    fitted_on = {}

    def recording_features(model, loader, *args, **kwargs):  # what the probe head is fitted on
        images, labels = map(torch.cat, zip(*loader))
        fitted_on.update(images=images, labels=labels)
        return pre_logit_features(model, loader, *args, **kwargs)

    monkeypatch.setattr(trainer, "pre_logit_features", recording_features)
    monkeypatch.setattr(trainer, "train_one_epoch", lambda *args, **kwargs: 1.0)  # only the start matters here
    run = train(tiny_config(epochs=1, head_init="probe"), data, tmp_path / "run", progress=False)
    count = len(RunData.read(run).split.train)
    images, labels = fitted_on["images"], fitted_on["labels"]
    assert len(images) == 2 * count
    assert torch.equal(images[count:], images[:count].flip(-1))  # the same images, mirrored left-right
    assert torch.equal(labels[count:], labels[:count])


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2h", 7200),
                                           ("1.5m", 90)])
def test_budget_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5x", "0m"])
def test_bad_budgets_are_refused_by_name(text):
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


def test_budget_sizes_the_epochs_from_the_time_left():
    # 600 s, 60 s kept for evaluation and report, 60 s spent: 480 s left for 100 s epochs -> 4 epochs.
    assert epochs_within(600, 60, 100, max_epochs=25, finish_seconds=60) == 4
    assert epochs_within(600, 60, 100, max_epochs=3, finish_seconds=60) == 3  # never more than the config asks for
    assert epochs_within(10, 60, 100, max_epochs=25, finish_seconds=60) == 1  # at least one


def test_a_budget_too_short_for_one_epoch_says_how_long_the_run_will_take():
    fits = budget.plan_summary(180, spent_seconds=30, epoch_seconds=20, finish_seconds=50, epochs=5)
    assert fits == "budget 3m00s: about 20s an epoch and 50s to evaluate and report, so 5 epochs"
    short = budget.plan_summary(60, spent_seconds=31, epoch_seconds=16, finish_seconds=51, epochs=1)
    assert short.endswith("so 1 epoch; with 31s spent already, the run will take about 1m38s, the least a run of "
                          "one epoch needs")


def test_a_pass_is_timed_as_its_start_up_once_and_its_steady_items(monkeypatch):
    """Each epoch's first step pays the loader's start-up (workers, their first batches), once."""
    clock = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: clock[0])

    def work(seconds: float) -> None:
        clock[0] += seconds

    timing = budget.time_items([3.0, 1.0, 1.2, 0.8, 9.0], work, count=3)  # start-up, steady steps, unreached
    assert timing == budget.ItemTimes(first=3.0, per_item=pytest.approx(1.0))
    assert timing.total(21) == pytest.approx(23.0) and timing.total(0) == 0.0
    assert budget.time_items([3.0], work, count=3) == budget.ItemTimes(first=3.0, per_item=0.0)


def test_the_time_kept_after_training_covers_its_passes_over_the_images():
    """A big training set's feature pass outgrows a tenth of a short budget: the passes decide, not the share."""
    assert finishing_seconds(600, PassTimes(train=10, val=5)) == 60  # 10 + 7 x 5 = 45 s: a tenth of 600 s
    assert finishing_seconds(180, PassTimes(train=12, val=5.5)) == pytest.approx(50.5)  # not 18 s
    assert finishing_seconds(1800, PassTimes(train=420, val=40)) == pytest.approx(700)


def test_a_run_with_a_budget_writes_the_epochs_that_fit_into_its_config(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3)
    tight = train(tiny_config(epochs=30), data, tmp_path / "tight", progress=False, budget_seconds=0.001)
    assert Config.load(tight.config).epochs == 1 and checkpoint.read(tight.last)["epoch"] == 1
    loose = train(tiny_config(epochs=2), data, tmp_path / "loose", progress=False, budget_seconds=3600)
    assert Config.load(loose.config).epochs == 2 and checkpoint.read(loose.last)["epoch"] == 2
    # With the probe head, its passes over the images are what the time to keep is measured on.
    probed = train(tiny_config(epochs=30, head_init="probe"), data, tmp_path / "probed", progress=False,
                   budget_seconds=0.001)
    assert Config.load(probed.config).epochs == 1 and checkpoint.read(probed.last)["epoch"] == 1


def test_balanced_sampling_draws_classes_in_proportion_to_the_square_root_of_their_size():
    targets = [0] * 900 + [1] * 90 + [2] * 10
    assert should_balance("auto", targets) and not should_balance("auto", [0, 0, 1, 1, 1])
    assert should_balance("sampler", [0, 1]) and not should_balance("none", targets)
    draws = list(BalancedSampler(targets, seed=0, epoch=0))
    assert len(draws) == len(targets)
    shares = Counter(targets[i] for i in draws)
    expected = torch.tensor([900, 90, 10]) ** 0.5
    expected = (expected / expected.sum() * len(targets)).tolist()
    for label, share in shares.items():
        assert share == pytest.approx(expected[label], rel=0.25)
    assert shares[2] > 5 * 10  # the rarest class: more than five times its 10 draws without balancing
    assert draws == list(BalancedSampler(targets, seed=0, epoch=0))  # same (seed, epoch), same draws
    assert draws != list(BalancedSampler(targets, seed=0, epoch=1))
    halves = [list(BalancedSampler(targets, seed=0, epoch=0, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(draws)  # two processes share one epoch's draws

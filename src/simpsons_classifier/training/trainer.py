"""The training loop.

Each epoch: the stages the freezing schedule names are trainable, one pass over the augmented training set with
AdamW and label-smoothed cross-entropy (soft targets under MixUp/CutMix), an EMA update after every step,
validation of the EMA weights, the learning-rate schedule, and ``last.pt``/``best.pt`` written atomically.

Resuming is exact because nothing random carries over between epochs: every epoch reseeds torch from
``seed`` and the epoch number (data order, augmentation, MixUp and dropout), and the EMA warm-up is a function
of the global step, which the checkpoint keeps. A run stopped by SIGINT or SIGTERM (``interrupt.py``) saves at the
step boundary where it stopped: the checkpoint records the steps done in the epoch, the running training loss and
torch's random state, and the resumed epoch loads its first steps' batches again and drops them (the workers'
random streams, seeded per epoch, have to go through them) before it continues where the stop left it.

With ``unlabeled_dir`` (semi-supervised, FixMatch), every step also draws ``unlabeled_ratio`` unlabelled images per
labelled one, both views of each made by the batch pipeline; ``pseudo_labels.py`` picks which of them train. Their
draws are reseeded per epoch like the labelled ones, and a resumed epoch drops their first batches the same way.

A step whose loss or gradient is not finite is skipped and a run that keeps producing them stops
(``divergence.py``); one process writes a run folder at a time (``run_lock.py``); a run checks it can write
its checkpoints before it trains (``storage.check_writable``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..augment import BatchPipeline, build_eval_transform
from ..config import Config
from ..augment.pipeline import Views
from ..data.dataset import ImageDataset
from ..data.run_data import RunData, prepare_run_data, read_unlabeled, repoint_data, repoint_unlabeled
from ..data.split import source_group
from ..models import data_config, freeze_frozen_norms
from ..run_dir import RunDir
from ..run_lock import hold_run
from ..storage import check_writable
from . import checkpoint, distributed
from .budget import (TIMED_STEPS, PassTimes, Restored, epochs_within, finishing_seconds, format_duration,
                     plan_summary, time_items)
from .checkpoint import LoadedModel
from .curves import PROBE_EPOCH, UNLABELED_COLUMNS, plot_curves, read_metrics, write_metrics
from .divergence import NormStatistics, check_validation_loss, check_weights, raise_if_diverged
from .grow import HeadPlan, grow_from_run, read_init_run
from .interrupt import StopSignals, ignore_stop_signals
from .probe import fit_head, pre_logit_features, probe_images
from .pseudo_labels import (
    PseudoLabels,
    SelfAdaptiveThreshold,
    known_threshold,
    select_pseudo_labels,
    teacher_logits,
    unlabeled_loss,
)
from .pseudo_start import fit_pseudo_start
from .sampling import BalancedSampler, CyclingSampler, imbalance_ratio, should_balance
from .schedule import active_stages
from .state import EpochProgress, TrainingState
from .validate import autocast, predict, score_sums, scores_from_sums
from .weight_ensemble import weight_ensemble

_EPOCH_SEED_STRIDE = 10_007  # seed * stride + epoch: distinct streams for different seeds and epochs
CHECKPOINT_COPIES = 10
"""Free space a run needs, in copies of its model, at its peak: while a new last.pt (the model, its EMA and AdamW's
two moments: 4) is written beside the old one (4) before replacing it, best.pt (1) and start.pt (1) are there."""


class RunExistsError(FileExistsError):
    """A run folder that already holds a run: resume it or pick another folder."""


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, progress: bool = True,
    split_file: str | Path | None = None, budget_seconds: float | None = None,
) -> RunDir:
    """Train a new run from ``data_dir`` into ``out_dir``. ``split_file``: another run's split.csv to use instead
    of making one. ``budget_seconds``: size ``epochs`` (at most the config's) to fit this wall-clock time.
    With ``config.init_run``, the model starts from that run's best one, its head grown to the data's classes
    (``grow.py``)."""
    started = time.perf_counter()
    run = RunDir(out_dir)
    _refuse_existing(run)
    # Before anything is written: the start run, and whether the data's class folders share a name with it.
    source = read_init_run(config.init_run, config.backbone, data_dir) if config.init_run else None
    ctx = distributed.setup()
    with hold_run(run, enabled=ctx.is_main):
        if ctx.is_main:
            _refuse_existing(run)  # again, now that no other process can be writing it
            check_writable(run.path)  # before the config, split and data files; the checkpoints' size comes later
            config.save(run.config)
            data = prepare_run_data(config, data_dir, run, progress=progress, split_file=split_file)
            _print_data_summary(data, run)
            if source is not None:
                _print_head_plan(HeadPlan(tuple(source.classes), tuple(data.classes)), config.init_run)
        distributed.barrier(ctx)
        budget = (budget_seconds, started) if budget_seconds is not None else None
        return _fit(config, run, ctx, resume_from=None, progress=progress, budget=budget, source=source)


def _refuse_existing(run: RunDir) -> None:
    if run.holds_run():
        raise RunExistsError(f"{run} already holds a run: continue it with --resume {run} or use another --out")


def resume(run_dir: str | Path, progress: bool = True, data_root: str | Path | None = None,
           unlabeled_root: str | Path | None = None) -> RunDir:
    """Continue the run in ``run_dir`` from its last checkpoint (the end of an epoch, or the step where a stop
    signal left it), with its own config and split. ``data_root`` / ``unlabeled_root``: the run's dataset /
    unlabelled folder moved there (recorded in the run, see ``repoint_data`` and ``repoint_unlabeled``)."""
    run = RunDir(run_dir)
    config = Config.load(run.config)
    ctx = distributed.setup()
    with hold_run(run, enabled=ctx.is_main):
        if ctx.is_main and data_root is not None:
            print(repoint_data(run, data_root))
        if ctx.is_main and unlabeled_root is not None:
            print(repoint_unlabeled(run, unlabeled_root))
        distributed.barrier(ctx)
        payload = checkpoint.read(run.last)
        if ctx.is_main:
            done = EpochProgress.from_state_dict(payload.get("progress")).batches
            within = f", {done} steps into epoch {payload['epoch'] + 1}" if done else ""
            print(f"resuming {run} after epoch {payload['epoch']} of {config.epochs}{within}")
        return _fit(config, run, ctx, resume_from=payload, progress=progress)


def seed_epoch(config: Config, epoch: int) -> None:
    torch.manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch)


def _fit(config: Config, run: RunDir, ctx: distributed.Context, resume_from: dict[str, Any] | None,
         progress: bool, budget: tuple[float, float] | None = None, source: LoadedModel | None = None) -> RunDir:
    """``source``: the model of ``config.init_run`` a new run starts from."""
    data = RunData.read(run)
    data.check_root()
    show = progress and ctx.is_main
    seed_epoch(config, -1)
    workers = distributed.loader_workers(config.num_workers, ctx.world_size)
    steps_per_epoch = _steps_per_epoch(len(data.split.train), config, ctx)
    # Resumed, the weights come from the checkpoint; started from another run, from that run.
    weights = "none" if resume_from or source is not None else config.weights
    state = TrainingState.create(config, len(data.classes), ctx, weights, steps_per_epoch)
    if ctx.is_main:  # a full disk is found now, not when the first epoch's checkpoint is written
        check_writable(run.path, CHECKPOINT_COPIES * _model_bytes(state.model))
    normalisation = data_config(state.model)
    pipeline = BatchPipeline(config, normalisation["mean"], normalisation["std"], len(data.classes), ctx.device)
    eval_transform = build_eval_transform(config.image_size, normalisation["mean"], normalisation["std"])
    train_set = ImageDataset(data.split.train, data.classes, pipeline.sample_transform, decode_size=config.image_size)
    val_set = ImageDataset(data.split.val[ctx.rank :: ctx.world_size], data.classes, eval_transform,
                           decode_size=config.image_size)
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, num_workers=workers,
                            worker_init_fn=ignore_stop_signals)
    unlabeled = read_unlabeled(run) if config.unlabeled_dir else []
    unlabeled_set = (ImageDataset(unlabeled, None, pipeline.view_transform, decode_size=config.image_size)
                     if unlabeled else None)

    def validation_logits(desc: str = "validating") -> tuple[torch.Tensor, torch.Tensor]:
        """The validated model's logits and targets; in a semi-supervised run, the known-character threshold
        calibrated on them."""
        logits, targets = predict(state.evaluated, val_loader, ctx.device, amp=config.amp,
                                  channels_last=config.channels_last, progress=show, desc=desc)
        if unlabeled_set is not None:
            max_logits = logits.max(dim=1).values if len(logits) else torch.empty(0)
            state.known_at = known_threshold(distributed.gather_across(max_logits, ctx))
        return logits, targets

    def validate(epoch_name: str) -> dict[str, float]:
        logits, targets = validation_logits()
        scores = scores_from_sums(distributed.sum_across(score_sums(logits, targets), ctx))
        check_validation_loss(scores["loss"], epoch_name, config)
        return scores

    def semi_supervised_start(labelled: tuple[np.ndarray, np.ndarray], labelled_loader: DataLoader,
                              probe_scores: dict[str, float]) -> tuple[dict[str, float], list[int]]:
        """The probe head refitted with the unlabelled images the anchored k-means labels (``pseudo_start.py``),
        kept only where it scores at least the probe on the validation images, as the best checkpoint would keep
        the probe. ``labelled``: the features and classes the probe was fitted on, from ``labelled_loader``. Returns
        the start's scores and its unlabelled images used, rejected and pending."""
        probe_head = {k: v.clone() for k, v in state.model.get_classifier().state_dict().items()}
        probe_known_at = state.known_at  # calibrated on the probe's validation logits
        unlabelled_loader = DataLoader(probe_images(unlabeled, None, eval_transform, config.image_size),
                                       batch_size=config.batch_size * 2, num_workers=workers,
                                       worker_init_fn=ignore_stop_signals)
        sources = ([source_group(s.path) for s in data.split.train], [source_group(s.path) for s in unlabeled])
        used, rejected, pending = fit_pseudo_start(state.model, *labelled, labelled_loader, unlabelled_loader,
                                                   probe_known_at, ctx.device, show, sources).counts()
        if used == 0:  # the head is still the probe
            return probe_scores, [used, rejected, pending]
        state.sync_ema()
        refitted = validate("the probe refitted with unlabelled images")
        if refitted["top1"] >= probe_scores["top1"]:
            return refitted, [used, rejected, pending]
        state.model.get_classifier().load_state_dict(probe_head)
        state.sync_ema()
        state.known_at = probe_known_at
        if ctx.is_main:
            print(f"the probe refitted with {used} unlabelled images scored {100 * refitted['top1']:.1f}%, below the "
                  f"probe's {100 * probe_scores['top1']:.1f}%: fine-tuning starts from the probe", flush=True)
        return probe_scores, [0, rejected, used + pending]

    def record(epoch: int, train_loss: float, scores: dict[str, float], seconds: float, skipped: int = 0,
               unlabeled_counts: list[int] | None = None) -> None:
        """Keep the best weights, the resume point, the metrics row and its line on the console (``skipped``: the
        epoch's steps skipped for a non-finite loss or gradient; ``unlabeled_counts``: its unlabelled images used,
        rejected as unknown and pending, summed over the processes)."""
        improved = scores["top1"] > state.best_top1
        state.best_top1 = max(state.best_top1, scores["top1"])
        history.append({"epoch": epoch, "lr": state.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                        "val_loss": scores["loss"], "val_top1": scores["top1"], "val_top5": scores["top5"],
                        "seconds": seconds})
        counts = unlabeled_counts or [0, 0, 0]
        if unlabeled_set is not None:
            history[-1].update(zip(UNLABELED_COLUMNS, counts))
        if not ctx.is_main:
            return
        if improved:
            check_weights(state.evaluated, _epoch_name(epoch, config), config)
            payload = checkpoint.inference_payload(state.evaluated.state_dict(), config, data.classes, normalisation,
                                                   epoch)
            checkpoint.save_atomic(payload, run.best)
        checkpoint.save_atomic(state.state_dict(), run.last)
        write_metrics(run.metrics, history)
        plot_curves(history, run.curves, config.epochs)
        if epoch in (PROBE_EPOCH, config.epochs):  # the start and the final ensemble: no training, nothing left
            heading, left = _epoch_name(epoch, config), ""
        else:
            remaining = (config.epochs - epoch - 1) * seconds
            heading = f"{_epoch_name(epoch, config)}  train_loss {train_loss:.3f}"
            left = f", about {format_duration(remaining)} left" if remaining else ""
        print(f"{heading}  val_loss {scores['loss']:.3f}  top1 {100 * scores['top1']:.1f}%  "
              f"top5 {100 * scores['top5']:.1f}%  ({seconds:.0f}s{left}){'  *best*' if improved else ''}"
              + (f"  unlabelled: {_unlabeled_summary(*counts)}" if unlabeled_set is not None else "")
              + (f"  ({skipped} steps skipped: non-finite loss or gradient)" if skipped else ""), flush=True)

    balanced = should_balance(config.balance, train_set.targets)
    with StopSignals(f"continue from the last checkpoint with  simpsons train --resume {run}") as stop:
        if resume_from is not None:
            state.load_state_dict(resume_from)
        history = [r for r in read_metrics(run.metrics) if r["epoch"] < state.epoch + state.ensembled]
        passes = None  # timed where the probe head makes them, for --budget
        start_counts = None  # the unlabelled images the semi-supervised start used, rejected and left pending
        if resume_from is None:
            if ctx.is_main and balanced:
                print(f"class-balanced sampling: the largest class has {imbalance_ratio(train_set.targets):.1f}x the "
                      f"images of the smallest")
            if config.starts_from_classifier:
                started = time.perf_counter()
                plain_train_set = probe_images(data.split.train, data.classes, eval_transform, config.image_size)
                plain_loader = DataLoader(plain_train_set, batch_size=config.batch_size * 2, num_workers=workers,
                                          worker_init_fn=ignore_stop_signals)
                if source is not None:  # the grown head replaces the probe, which would refit the known rows
                    plan = HeadPlan(tuple(source.classes), tuple(data.classes))
                    grow_from_run(state.model, source, plan, plain_loader, ctx.device, show)
                else:
                    labelled = pre_logit_features(state.model, plain_loader, ctx.device, show)
                    fit_head(state.model, *labelled)
                train_pass = (time.perf_counter() - started) / len(plain_train_set.datasets)
                state.sync_ema()
                # Scored like an epoch: the best checkpoint is never worse than where fine-tuning starts.
                val_started = time.perf_counter()
                scores = validate(_epoch_name(PROBE_EPOCH, config))
                passes = PassTimes(train=train_pass, val=time.perf_counter() - val_started)
                if unlabeled_set is not None and source is None:
                    scores, start_counts = semi_supervised_start(labelled, plain_loader, scores)
                if config.ensembles_weights and ctx.is_main:
                    checkpoint.save_atomic(checkpoint.weights_payload(state.evaluated.state_dict()), run.start)
                record(PROBE_EPOCH, float("nan"), scores, time.perf_counter() - started, unlabeled_counts=start_counts)
            if unlabeled_set is not None and state.known_at is None:  # no validation yet: calibrate on the start
                validation_logits(desc="calibrating the known-character threshold")
            if budget is not None:
                _fit_to_budget(config, run, state, budget, pipeline, train_set, val_loader, ctx, workers, balanced,
                               passes, unlabeled_set)

        for epoch in range(state.epoch, config.epochs):
            seed_epoch(config, epoch)
            state.train_stages(active_stages(config, epoch))
            started = time.perf_counter()
            loader = _train_loader(train_set, config, ctx, epoch, workers, pipeline.collate, balanced)
            unlabeled_loader = (None if unlabeled_set is None else _unlabeled_loader(
                unlabeled_set, config, ctx, epoch, workers, pipeline.collate_views, len(loader)))
            batches = pipeline.batches(*_batches_left([loader, unlabeled_loader], state.progress))
            train_loss = train_one_epoch(state, batches, epoch, config, show, stop, steps=len(loader))
            if train_loss is None:
                done = state.progress.batches
                _save_and_stop(state, run, ctx, stop, f"in epoch {epoch + 1}/{config.epochs} after step {done} of "
                               f"{len(loader)}" if done else f"at the start of epoch {epoch + 1}/{config.epochs}")
            scores = validate(_epoch_name(epoch, config))
            state.schedule.after_epoch(scores["loss"])
            state.epoch = epoch + 1
            done, state.progress = state.progress, EpochProgress()
            record(epoch, train_loss, scores, time.perf_counter() - started, skipped=done.non_finite,
                   unlabeled_counts=[int(n) for n in distributed.sum_across(done.unlabeled_counts, ctx)])
            distributed.barrier(ctx)
        if config.ensembles_weights and not state.ensembled and not distributed.any_across(stop.requested, ctx):
            if run.start.is_file():
                started = time.perf_counter()
                start = checkpoint.read(run.start)["model"]
                state.evaluated.load_state_dict(weight_ensemble(start, state.evaluated.state_dict(),
                                                                config.wise_alpha))
                state.ensembled = True
                record(config.epochs, float("nan"), validate(_epoch_name(config.epochs, config)),
                       time.perf_counter() - started)
            elif ctx.is_main:
                print(f"no {run.start.name} (a run begun by an earlier version): the run ends with its fine-tuned "
                      f"weights", flush=True)
        if distributed.any_across(stop.requested, ctx):  # asked during the last validation: training is done
            raise stop.interrupted(f"stopped by {stop.name} after the last epoch, before the evaluation: "
                                   f"simpsons train --resume {run} evaluates and reports it")
    distributed.teardown()
    return run


def _epoch_name(epoch: int, config: Config) -> str:
    if epoch == PROBE_EPOCH:
        return f"{'grown' if config.init_run else 'probe'} head (epoch 0)"
    if epoch == config.epochs:
        return f"weight ensemble ({1 - config.wise_alpha:g} start + {config.wise_alpha:g} fine-tuned)"
    return f"epoch {epoch + 1}/{config.epochs}"


def _model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _batches_left(loaders: list[DataLoader | None], progress: EpochProgress) -> list[Iterable | None]:
    """Each of ``loaders`` (the labelled one, the unlabelled one or None) after the ``progress.batches`` batches a
    stopped run already trained on, torch's random state as it was after them. The batches are loaded and dropped,
    not skipped by index: with workers, each worker's random stream (augmentation) is seeded per epoch and has to
    go through them to reach the same state."""
    if not progress.batches:
        return list(loaders)
    left = [None if loader is None else iter(loader) for loader in loaders]
    for batches in left:
        for _ in range(progress.batches if batches is not None else 0):
            next(batches)
    progress.restore_random_state()
    return left


def _save_and_stop(state: TrainingState, run: RunDir, ctx: distributed.Context, stop: StopSignals,
                   where: str) -> None:
    """Write the mid-epoch checkpoint that resume continues from, and end with how to continue."""
    state.progress.keep_random_state()
    if ctx.is_main:
        checkpoint.save_atomic(state.state_dict(), run.last)
    distributed.barrier(ctx)
    raise stop.interrupted(f"stopped by {stop.name} {where}; saved in {run.last}: continue with  "
                           f"simpsons train --resume {run}")


def _fit_to_budget(config: Config, run: RunDir, state: TrainingState, budget: tuple[float, float],
                   pipeline: BatchPipeline, train_set: ImageDataset, val_loader: DataLoader,
                   ctx: distributed.Context, workers: int, balanced: bool, passes: PassTimes | None,
                   unlabeled_set: ImageDataset | None = None) -> None:
    """Time a few real steps (the training state put back afterwards), then set ``config.epochs`` to what fits in
    the budget, in the run's config too, and resize the schedule to it. ``passes``: the probe head's passes over
    the training and validation images, timed; without them, estimated from a few validation batches."""
    budget_seconds, started = budget
    seed_epoch(config, -1)
    state.train_stages(("head", config.unfreeze_stage))  # the costlier steps that most of a run takes
    loader = _train_loader(train_set, config, ctx, 0, workers, pipeline.collate, balanced)
    unlabeled_loader = (None if unlabeled_set is None else _unlabeled_loader(
        unlabeled_set, config, ctx, 0, workers, pipeline.collate_views, len(loader)))
    with Restored(state):  # the weights, the optimiser, fp16's loss scale and FreeMatch's bars
        steps = time_items(pipeline.batches(loader, unlabeled_loader),
                           lambda batch: train_on_batch(state, batch, config), TIMED_STEPS)
    if passes is None:
        with torch.no_grad():
            batches = time_items(val_loader, lambda batch: state.evaluated(batch[0].to(ctx.device)), 2)
        passes = PassTimes(train=batches.total(math.ceil(len(train_set) / val_loader.batch_size)),
                           val=batches.total(len(val_loader)))
    epoch_seconds = steps.total(len(loader)) + passes.val
    finish_seconds = finishing_seconds(budget_seconds, passes)
    spent_seconds = time.perf_counter() - started
    config.epochs = distributed.min_across(epochs_within(budget_seconds, spent_seconds, epoch_seconds, config.epochs,
                                                         finish_seconds), ctx)
    state.resize(config, len(loader))
    if ctx.is_main:
        config.save(run.config)  # what a resume reads
        print(plan_summary(budget_seconds, spent_seconds, epoch_seconds, finish_seconds, config.epochs), flush=True)


def train_on_batch(state: TrainingState, batch: tuple, config: Config) -> tuple[float | None, PseudoLabels | None]:
    """One step on a pipeline batch, ``(images, targets)`` or ``(images, targets, Views)``: the unlabelled views
    pseudo-labelled first. Returns the step's loss (see :func:`train_step`) and the pseudo-labels, if any."""
    images, targets, *unlabeled = batch
    if not unlabeled:
        return train_step(state, images, targets, config), None
    views: Views = unlabeled[0]
    if state.known_at is None:
        raise RuntimeError("semi-supervised step before the known-character threshold was calibrated")
    logits = teacher_logits(state.evaluated, state.model, views.weak, config)
    bar = config.pseudo_label_threshold
    if state.adaptive_bar is not None:
        statistics = SelfAdaptiveThreshold.step_statistics(logits, state.known_at)
        state.adaptive_bar.update(torch.tensor(distributed.sum_across(statistics.tolist(), state.ctx)))
        bar = state.adaptive_bar.thresholds()
    pseudo = select_pseudo_labels(logits, bar, state.known_at)
    return train_step(state, images, targets, config, views.strong, pseudo), pseudo


def train_step(state: TrainingState, images: torch.Tensor, targets: torch.Tensor, config: Config,
               strong: torch.Tensor | None = None, pseudo: PseudoLabels | None = None) -> float | None:
    """Forward, label-smoothed cross-entropy, backward and one optimiser step; returns the loss, or None when the
    loss or a gradient was not finite and the step was skipped (see ``divergence.py``). With unlabelled images'
    ``strong`` views and their ``pseudo`` labels, both batches go through one forward pass (one set of BatchNorm
    statistics, as FixMatch) and ``unlabeled_weight`` times their loss is added."""
    norms = NormStatistics(state.model)
    with autocast(state.ctx.device, config.amp):
        logits = state.net(images if strong is None else torch.cat([images, strong])).float()
    loss = F.cross_entropy(logits[: len(images)], targets, label_smoothing=config.label_smoothing)
    if pseudo is not None:
        loss = loss + config.unlabeled_weight * unlabeled_loss(logits[len(images) :], pseudo)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.unscale_(state.optimizer)  # nothing to undo without fp16
    gradients = [p.grad for p in state.model.parameters() if p.grad is not None]
    gradient_norm = torch.nn.utils.get_total_norm(gradients) if gradients else torch.zeros((), device=loss.device)
    checks = [loss.detach().float(), ~torch.isfinite(loss.detach()), ~torch.isfinite(gradient_norm)]
    loss_value, bad_loss, bad_gradient = torch.stack([c.float() for c in checks]).tolist()  # one device sync
    bad_loss, bad_gradient = (v > 0 for v in distributed.sum_across([bad_loss, bad_gradient], state.ctx))
    if bad_loss or bad_gradient:
        state.optimizer.zero_grad(set_to_none=True)
        norms.restore()
    else:
        state.scaler.step(state.optimizer)
    state.scaler.update()  # under fp16, an overflowing gradient lowers the scale
    counted = bad_loss or (bad_gradient and not state.scaler.is_enabled())
    return None if counted else loss_value


def train_one_epoch(state: TrainingState, batches: Iterable, epoch: int, config: Config, show: bool = False,
                    stop: StopSignals | None = None, steps: int | None = None) -> float | None:
    """One pass over ``batches`` of model-ready ``(images, targets)``, counted in ``state.progress`` (which may
    hold the first steps of the epoch already); returns the epoch's mean training loss, or None when ``stop`` was
    requested before the end. ``steps``: the epoch's length, for the progress bar."""
    state.net.train()
    freeze_frozen_norms(state.model)
    progress = state.progress
    bar = tqdm(total=steps, initial=progress.batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
               disable=not show)
    iterator = iter(batches)
    try:
        while True:
            if stop is not None and distributed.any_across(stop.requested, state.ctx):
                return None
            try:
                batch = next(iterator)
            except StopIteration:
                return progress.mean_loss
            loss, pseudo = train_on_batch(state, batch, config)
            state.schedule.after_step()
            if state.ema is not None:
                state.ema.update(state.model, step=state.step)
            state.step += 1
            progress.add(loss, len(batch[0]))
            raise_if_diverged(progress.non_finite_in_a_row, epoch, progress.batches, steps or progress.batches, config)
            bar.update()
            if pseudo is None:
                bar.set_postfix(loss=f"{progress.mean_loss:.3f}")
            else:
                progress.count_unlabeled(*pseudo.counts())
                used, rejected, pending = progress.unlabeled_counts
                bar.set_postfix(loss=f"{progress.mean_loss:.3f}", used=used, unknown=rejected, pending=pending)
    finally:
        bar.close()
        if isinstance(iterator, Generator):
            iterator.close()  # a loader stopped halfway shuts its workers down now


def _drop_last(train_images: int, config: Config, ctx: distributed.Context) -> bool:
    return train_images // ctx.world_size > config.batch_size  # a lone tiny last batch upsets BatchNorm


def _steps_per_epoch(train_images: int, config: Config, ctx: distributed.Context) -> int:
    per_process = -(-train_images // ctx.world_size)
    if _drop_last(train_images, config, ctx):
        return per_process // config.batch_size
    return -(-per_process // config.batch_size)


def _train_loader(
    train_set: ImageDataset, config: Config, ctx: distributed.Context, epoch: int, workers: int, collate,
    balanced: bool = False,
) -> DataLoader:
    """A loader whose order and worker seeds depend only on (seed, epoch), for every process count."""
    common = dict(batch_size=config.batch_size, num_workers=workers,
                  drop_last=_drop_last(len(train_set), config, ctx),
                  pin_memory=ctx.device.type == "cuda", collate_fn=collate, worker_init_fn=ignore_stop_signals)
    if balanced:
        sampler = BalancedSampler(train_set.targets, config.seed, epoch, ctx.rank, ctx.world_size)
        generator = torch.Generator().manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch)  # workers' seeds
        return DataLoader(train_set, sampler=sampler, generator=generator, **common)
    if ctx.distributed:
        sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
        return DataLoader(train_set, sampler=sampler, **common)
    generator = torch.Generator().manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch)
    return DataLoader(train_set, shuffle=True, generator=generator, **common)


def _unlabeled_loader(unlabeled_set: ImageDataset, config: Config, ctx: distributed.Context, epoch: int, workers: int,
                      collate, steps: int) -> DataLoader:
    """``steps`` batches of ``unlabeled_ratio * batch_size`` unlabelled images, whose order and worker seeds depend
    only on (seed, epoch), for every process count."""
    per_step = config.unlabeled_ratio * config.batch_size
    sampler = CyclingSampler(len(unlabeled_set), steps * per_step, config.seed, epoch, ctx.rank, ctx.world_size)
    generator = torch.Generator().manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch + CyclingSampler.STREAM)
    return DataLoader(unlabeled_set, batch_size=per_step, sampler=sampler, generator=generator, num_workers=workers,
                      pin_memory=ctx.device.type == "cuda", collate_fn=collate, worker_init_fn=ignore_stop_signals)


def _unlabeled_summary(used: int, rejected: int, pending: int) -> str:
    return f"{used} pseudo-labelled, {rejected} rejected as unknown, {pending} pending"


def _print_head_plan(plan: HeadPlan, init_run: str) -> None:
    print(f"starting from {init_run}: {plan}")
    if plan.dropped:
        warnings.warn(f"classes of {init_run} that the data lacks are dropped from the new model: "
                      f"{', '.join(plan.dropped)}", stacklevel=3)


def _print_data_summary(data: RunData, run: RunDir) -> None:
    s = data.summary
    print(
        f"data: {s['num_images']} images in {len(data.classes)} classes from {s['root']}; "
        f"{s['num_skipped']} files skipped (see {run.skipped})"
        + (f"; dropped small classes {s['dropped_classes']}" if s["dropped_classes"] else "")
    )
    print(f"split: {s['split']}, {s['train_images']} train / {s['val_images']} validation images")
    if s.get("unlabeled_root"):
        print(f"unlabelled: {s['unlabeled_images']} images from {s['unlabeled_root']}; {s['unlabeled_skipped']} files "
              f"skipped (see {run.unlabeled_skipped})")

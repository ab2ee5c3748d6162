"""The training loop of the reference recipe.

Each epoch: the stages the schedule names are trainable (the head alone before ``unfreeze_epoch``, then the
head and ``unfreeze_stage``), one pass over the augmented training set with AdamW and label-smoothed
cross-entropy (soft targets under MixUp/CutMix), an EMA update after every step, validation of the EMA weights,
ReduceLROnPlateau on the validation loss, and ``last.pt``/``best.pt`` written atomically.

Resuming is exact because nothing random carries over between epochs: every epoch reseeds torch from
``seed`` and the epoch number (data order, augmentation, MixUp and dropout), and the EMA warm-up is a function
of the global step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..augment import (
    Normalise,
    build_batch_mixer,
    build_device_augment,
    build_eval_transform,
    build_train_transform,
    collate,
)
from ..config import Config
from ..data.dataset import ImageDataset
from ..data.run_data import RunData, prepare_run_data
from ..models import create_model, data_config, param_groups, set_trainable_stages
from ..models.stages import freeze_frozen_norms
from . import checkpoint, distributed
from .curves import plot_curves, read_metrics, write_metrics
from .probe import fit_probe_head
from .validate import autocast, predict, score_sums, scores_from_sums

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.csv"
CURVES = "curves.png"
_EPOCH_SEED_STRIDE = 10_007  # seed * stride + epoch: distinct streams for different seeds and epochs


class RunExistsError(FileExistsError):
    """A run folder that already holds a run: resume it or pick another folder."""


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, progress: bool = True,
    split_file: str | Path | None = None,
) -> Path:
    """Train a new run from ``data_dir`` into ``out_dir``; returns the run folder. ``split_file``: another
    run's split.csv to use instead of making one."""
    run_dir = Path(out_dir)
    if (run_dir / LAST).exists():
        raise RunExistsError(f"{run_dir} already holds a run: continue it with --resume {run_dir} or use another --out")
    ctx = distributed.setup()
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / CONFIG_FILE)
        data = prepare_run_data(config, data_dir, run_dir, progress=progress, split_file=split_file)
        _print_data_summary(data, run_dir)
    distributed.barrier(ctx)
    return _fit(config, run_dir, ctx, resume_state=None, progress=progress)


def resume(run_dir: str | Path, progress: bool = True) -> Path:
    """Continue the run in ``run_dir`` from its last completed epoch, with its own config and split."""
    run_dir = Path(run_dir)
    config = Config.load(run_dir / CONFIG_FILE)
    state = checkpoint.read(run_dir / LAST)
    ctx = distributed.setup()
    if ctx.is_main:
        print(f"resuming {run_dir} after epoch {state['epoch']} of {config.epochs}")
    return _fit(config, run_dir, ctx, resume_state=state, progress=progress)


def active_stages(config: Config, epoch: int) -> tuple[str, ...]:
    return ("head", config.unfreeze_stage) if epoch >= config.unfreeze_epoch else ("head",)


def seed_epoch(config: Config, epoch: int) -> None:
    torch.manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch)


def _fit(
    config: Config, run_dir: Path, ctx: distributed.Context, resume_state: dict[str, Any] | None, progress: bool
) -> Path:
    data = RunData.read(run_dir)
    show = progress and ctx.is_main
    seed_epoch(config, -1)
    weights = "none" if resume_state is not None else config.weights
    model = create_model(config.backbone, len(data.classes), weights)
    normalisation = data_config(model)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(ctx.device, memory_format=memory_format)
    ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True) if config.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(
        param_groups(model, config.lr, config.backbone_lr_mult), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=ctx.device.type == "cuda" and config.amp == "fp16")
    mixer = build_batch_mixer(config, len(data.classes))

    device_augment = build_device_augment(config, normalisation["mean"], normalisation["std"], ctx.device)
    normalise = Normalise(normalisation["mean"], normalisation["std"])
    train_set = ImageDataset(
        data.split.train,
        data.classes,
        device_augment.per_sample if device_augment is not None
        else build_train_transform(config, normalisation["mean"], normalisation["std"]),
        decode_size=config.image_size,
    )
    val_set = ImageDataset(
        data.split.val[ctx.rank :: ctx.world_size],
        data.classes,
        build_eval_transform(config.image_size, normalisation["mean"], normalisation["std"]),
        decode_size=config.image_size,
    )
    workers = _num_workers(config, ctx)
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, num_workers=workers)
    if resume_state is None and config.head_init == "probe":
        plain_train_set = ImageDataset(data.split.train, data.classes, val_set.transform, decode_size=config.image_size)
        plain_loader = DataLoader(plain_train_set, batch_size=config.batch_size * 2, num_workers=workers)
        accuracy = fit_probe_head(model, plain_loader, ctx.device, show)
        if ctx.is_main:
            print(f"head initialised by a linear probe on frozen features (training accuracy {100 * accuracy:.1f}%)")
        if ema is not None:
            ema.module.load_state_dict(model.state_dict())

    start_epoch, best_top1 = 0, -1.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        if ema is not None:
            ema.module.load_state_dict(resume_state["ema"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        start_epoch, best_top1 = resume_state["epoch"], resume_state["best_top1"]
    history = [r for r in read_metrics(run_dir / METRICS) if r["epoch"] < start_epoch]

    net, stages = model, None
    for epoch in range(start_epoch, config.epochs):
        seed_epoch(config, epoch)
        if active_stages(config, epoch) != stages:
            stages = active_stages(config, epoch)
            set_trainable_stages(model, stages)
            net = distributed.wrap(model, ctx)
            if config.compile:
                net = torch.compile(net)
        started = time.perf_counter()
        loader = _train_loader(train_set, config, ctx, epoch, workers)
        train_loss = _train_one_epoch(
            net, model, ema, loader, optimizer, scaler, mixer, config, ctx, epoch, memory_format, show, device_augment,
            normalise,
        )
        evaluated = ema.module if ema is not None else model
        logits, targets = predict(
            evaluated, val_loader, ctx.device, config.amp, config.channels_last, show, desc="validating"
        )
        scores = scores_from_sums(distributed.sum_across(score_sums(logits, targets), ctx))
        scheduler.step(scores["loss"])
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_loss": scores["loss"],
            "val_top1": scores["top1"],
            "val_top5": scores["top5"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        improved = scores["top1"] > best_top1
        best_top1 = max(best_top1, scores["top1"])
        if ctx.is_main:
            if improved:
                checkpoint.save_atomic(
                    checkpoint.inference_payload(evaluated.state_dict(), config, data.classes, normalisation, epoch),
                    run_dir / BEST,
                )
            checkpoint.save_atomic(
                {
                    "format": checkpoint.FORMAT_VERSION,
                    "epoch": epoch + 1,
                    "best_top1": best_top1,
                    "model": model.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                },
                run_dir / LAST,
            )
            write_metrics(run_dir / METRICS, history)
            plot_curves(history, run_dir / CURVES)
            print(
                f"epoch {epoch + 1}/{config.epochs}  train_loss {train_loss:.3f}  val_loss {scores['loss']:.3f}  "
                f"top1 {100 * scores['top1']:.1f}%  top5 {100 * scores['top5']:.1f}%  "
                f"({row['seconds']:.0f}s){'  *best*' if improved else ''}",
                flush=True,
            )
        distributed.barrier(ctx)
    distributed.teardown()
    return run_dir


def _train_one_epoch(
    net: nn.Module,
    model: nn.Module,
    ema: ModelEmaV3 | None,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    mixer,
    config: Config,
    ctx: distributed.Context,
    epoch: int,
    memory_format: torch.memory_format,
    show: bool,
    device_augment,
    normalise: Normalise,
) -> float:
    net.train()
    freeze_frozen_norms(model)
    steps_per_epoch = len(loader)
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not show)
    for step, (images, labels) in enumerate(bar):
        if device_augment is not None:
            images = device_augment(*images)  # (canvases, metadata) -> the augmented batch, on the device
        images = images.to(ctx.device, non_blocking=True, memory_format=memory_format)
        if images.dtype == torch.uint8:  # the fused engine's samples: normalised here, on the device
            images = normalise(images)
        labels = labels.to(ctx.device, non_blocking=True)
        targets = labels
        if mixer is not None:
            images, targets = mixer(images, labels)
        with autocast(ctx.device, config.amp):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model, step=epoch * steps_per_epoch + step)
        total += loss.item() * len(images)
        count += len(images)
        bar.set_postfix(loss=f"{total / count:.3f}")
    return total / max(count, 1)


def _train_loader(
    train_set: ImageDataset, config: Config, ctx: distributed.Context, epoch: int, workers: int
) -> DataLoader:
    """A loader whose order and worker seeds depend only on (seed, epoch), for every process count."""
    drop_last = len(train_set) // ctx.world_size > config.batch_size  # a lone tiny last batch upsets BatchNorm
    common = dict(batch_size=config.batch_size, num_workers=workers, drop_last=drop_last,
                  pin_memory=ctx.device.type == "cuda", collate_fn=collate)
    if ctx.distributed:
        sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
        return DataLoader(train_set, sampler=sampler, **common)
    generator = torch.Generator().manual_seed(config.seed * _EPOCH_SEED_STRIDE + epoch)
    return DataLoader(train_set, shuffle=True, generator=generator, **common)


def _num_workers(config: Config, ctx: distributed.Context) -> int:
    if config.num_workers is not None:
        return config.num_workers
    return max(1, min(8, (os.cpu_count() or 1) // ctx.world_size))


def _print_data_summary(data: RunData, run_dir: Path) -> None:
    s = data.summary
    print(
        f"data: {s['num_images']} images in {len(data.classes)} classes from {s['root']}; "
        f"{s['num_skipped']} files skipped (see {run_dir / 'skipped.csv'})"
        + (f"; dropped small classes {s['dropped_classes']}" if s["dropped_classes"] else "")
    )
    print(f"split: {s['split']}, {s['train_images']} train / {s['val_images']} validation images")

"""What a training run carries from step to step: the model, its EMA, the optimiser, the learning-rate schedule,
the AMP scaler and the counters. The loop, checkpointing and resume all go through :class:`TrainingState`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn

from ..config import Config
from ..models import create_model, param_groups, set_trainable_stages
from . import distributed
from .checkpoint import FORMAT_VERSION
from .schedule import LearningRateSchedule, build_schedule
from .pseudo_labels import SelfAdaptiveThreshold


@dataclass
class EpochProgress:
    """How far the current epoch got: what a checkpoint written in the middle of an epoch needs to continue it
    exactly (the batches to pass over, the running training loss, the skipped steps, and torch's random state
    after the last step: MixUp, dropout and, without workers, augmentation draw from it)."""

    batches: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    non_finite: int = 0
    """Steps skipped this epoch for a non-finite loss or gradient."""
    non_finite_in_a_row: int = 0
    unlabeled_used: int = 0
    unlabeled_rejected: int = 0
    unlabeled_pending: int = 0
    """Unlabelled images this epoch (in this process) pseudo-labelled, rejected as unknown characters, and left
    below the confidence threshold (``pseudo_labels.py``)."""
    rng: torch.Tensor | None = None
    cuda_rng: list[torch.Tensor] | None = None

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.loss_count if self.loss_count else float("nan")

    def add(self, loss: float | None, images: int) -> None:
        """One step done: its loss over ``images`` images, or None when it was skipped."""
        self.batches += 1
        if loss is None:
            self.non_finite += 1
            self.non_finite_in_a_row += 1
        else:
            self.non_finite_in_a_row = 0
            self.loss_sum += loss * images
            self.loss_count += images

    def count_unlabeled(self, used: int, rejected: int, pending: int) -> None:
        self.unlabeled_used += used
        self.unlabeled_rejected += rejected
        self.unlabeled_pending += pending

    @property
    def unlabeled_counts(self) -> list[int]:
        """[used, rejected, pending]."""
        return [self.unlabeled_used, self.unlabeled_rejected, self.unlabeled_pending]

    def keep_random_state(self) -> None:
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore_random_state(self) -> None:
        if self.rng is not None:
            torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> EpochProgress:
        return cls(**state) if state else cls()


@dataclass
class TrainingState:
    model: nn.Module
    ema: ModelEmaV3 | None
    optimizer: torch.optim.Optimizer
    schedule: LearningRateSchedule
    scaler: torch.amp.GradScaler
    ctx: distributed.Context
    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Optimiser steps completed."""
    best_top1: float = -1.0
    net: nn.Module | None = None
    """What the forward pass goes through: the model itself, or its DistributedDataParallel wrapper."""
    stages: tuple[str, ...] = ()
    compile: bool = False
    """Run the forward pass through ``torch.compile`` (``config.compile``)."""
    progress: EpochProgress = field(default_factory=EpochProgress)
    """The unfinished epoch ``epoch``: empty between epochs."""
    known_at: float | None = None
    """Semi-supervised runs: the max-logit from which an unlabelled image counts as a known character, calibrated
    on the last validation (``pseudo_labels.known_threshold``)."""
    adaptive_bar: SelfAdaptiveThreshold | None = None
    """Semi-supervised runs with ``pseudo_label_threshold: null``: FreeMatch's per-class confidence bars."""
    ensembled: bool = False
    """The evaluated weights are the final weight-space ensemble (``config.wise_alpha``): training is over."""

    @classmethod
    def create(cls, config: Config, num_classes: int, ctx: distributed.Context, weights: str,
               steps_per_epoch: int) -> TrainingState:
        model = create_model(config.backbone, num_classes, weights)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model.to(ctx.device, memory_format=memory_format)
        decay = config.ema_decay_for(config.epochs * steps_per_epoch)
        ema = ModelEmaV3(model, decay=decay, use_warmup=True) if decay > 0 else None
        optimizer = torch.optim.AdamW(
            param_groups(model, config.head_lr, config.backbone_lr_mult), weight_decay=config.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=ctx.device.type == "cuda" and config.amp == "fp16")
        adaptive = config.unlabeled_dir is not None and config.pseudo_label_threshold is None
        return cls(model, ema, optimizer, build_schedule(config, optimizer, steps_per_epoch), scaler, ctx, net=model,
                   compile=config.compile, adaptive_bar=SelfAdaptiveThreshold(num_classes) if adaptive else None)

    def resize(self, config: Config, steps_per_epoch: int) -> None:
        """Fit the schedule and the EMA's horizon to ``config.epochs`` after it changed (``--budget``)."""
        self.schedule = build_schedule(config, self.optimizer, steps_per_epoch)
        if self.ema is not None:
            self.ema.decay = config.ema_decay_for(config.epochs * steps_per_epoch)

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and saved as best: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def train_stages(self, stages: tuple[str, ...]) -> None:
        """Make only ``stages`` trainable (rebuilding the DDP wrapper, which fixes its parameters when built)."""
        if stages != self.stages:
            self.stages = stages
            set_trainable_stages(self.model, stages)
            self.net = distributed.wrap(self.model, self.ctx)
            if self.compile:
                self.net = torch.compile(self.net)

    def sync_ema(self) -> None:
        """Start the EMA from the current weights (after the head was fitted before training)."""
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "best_top1": self.best_top1,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": self.progress.state_dict(),
            "known_at": self.known_at,
            "adaptive_bar": self.adaptive_bar.state_dict() if self.adaptive_bar is not None else None,
            "ensembled": self.ensembled,
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.schedule.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step, self.best_top1 = payload["epoch"], payload["step"], payload["best_top1"]
        self.progress = EpochProgress.from_state_dict(payload.get("progress"))  # absent before mid-epoch saves
        self.known_at = payload.get("known_at")
        if self.adaptive_bar is not None and payload.get("adaptive_bar") is not None:
            self.adaptive_bar.load_state_dict(payload["adaptive_bar"])
        self.ensembled = payload.get("ensembled", False)

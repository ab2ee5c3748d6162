"""What a training run carries from step to step: the model, its EMA, the optimiser, the learning-rate schedule,
the AMP scaler and the counters. The loop, checkpointing and resume all go through :class:`TrainingState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn

from ..config import Config
from ..models import create_model, param_groups, set_trainable_stages
from . import distributed
from .checkpoint import FORMAT_VERSION
from .schedule import LearningRateSchedule, build_schedule


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
        return cls(model, ema, optimizer, build_schedule(config, optimizer, steps_per_epoch), scaler, ctx, net=model)

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
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.schedule.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step, self.best_top1 = payload["epoch"], payload["step"], payload["best_top1"]

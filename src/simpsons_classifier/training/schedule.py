"""When what trains, and how fast: the learning-rate schedule and the freezing schedule.

Two learning-rate schedules, named by ``config.lr_schedule``:

- ``plateau`` (the report's recipe): ReduceLROnPlateau on the validation loss, stepped once per epoch.
- ``cosine``: by optimiser steps, a linear warm-up over ``warmup_fraction`` of the run, then a cosine decay
  to zero at the last step. A schedule by steps behaves the same for 3 epochs of 70 steps and 25 epochs of 4,000,
  which a per-epoch plateau rule cannot (it never fires in a short run).

The freezing schedule trains the head alone until the unfreeze point, then the head and ``unfreeze_stage``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Protocol

import torch

from ..config import Config


class LearningRateSchedule(Protocol):
    def after_step(self) -> None: ...

    def after_epoch(self, val_loss: float) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _TorchSchedule:
    """A torch scheduler that is saved and restored with the training state."""

    scheduler: Any

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class PlateauSchedule(_TorchSchedule):
    """ReduceLROnPlateau on the validation loss after each epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=factor, patience=patience
        )

    def after_step(self) -> None:
        pass

    def after_epoch(self, val_loss: float) -> None:
        self.scheduler.step(val_loss)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear up to 1, then cosine down to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class WarmupCosineSchedule(_TorchSchedule):
    """Linear warm-up then cosine decay, one step per optimiser step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> None:
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps)
        )

    def after_step(self) -> None:
        """Counts every step, skipped ones too (a non-finite loss, fp16's overflowing first steps), so the schedule
        stays where a resume puts it; PyTorch's warning about a first optimiser step skipped is therefore not
        shown."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        pass


def build_schedule(config: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LearningRateSchedule:
    if config.lr_schedule == "plateau":
        return PlateauSchedule(optimizer, config.plateau_factor, config.plateau_patience)
    total_steps = config.epochs * steps_per_epoch
    return WarmupCosineSchedule(optimizer, total_steps, max(1, round(config.warmup_fraction * total_steps)))


def unfreeze_epoch(config: Config) -> int:
    """The first epoch that trains ``unfreeze_stage`` too: ``unfreeze_epoch`` as given, or ``unfreeze_fraction``
    of the run (rounded down, so a short run still fine-tunes: 0.2 of 3 epochs unfreezes at epoch 0)."""
    if config.unfreeze_fraction is not None:
        return math.floor(config.unfreeze_fraction * config.epochs)
    return config.unfreeze_epoch


def active_stages(config: Config, epoch: int) -> tuple[str, ...]:
    return ("head", config.unfreeze_stage) if epoch >= unfreeze_epoch(config) else ("head",)

"""A diverged run stops with the cause instead of training on, and saving, non-finite weights.

A step whose loss or gradient is not finite is skipped, as AMP's GradScaler skips an overflow: the weights, the
optimiser's moments and the norm layers' running statistics stay as they were (the forward pass has already moved
the statistics, so they are put back), while the schedule, the EMA and the step counter move on as after any step.
One bad batch costs one step. More than :data:`MAX_NON_FINITE_IN_A_ROW` such steps in a row, or a validation loss
that is not finite, mean the run has diverged: it stops with :class:`TrainingDiverged`, before ``best.pt`` or
``last.pt`` could hold the weights, so both keep the last epoch that was sound.

Under fp16 autocast an overflowing gradient is the GradScaler's business (it lowers its scale and skips the step)
and is not counted; a non-finite loss is.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config
from ..errors import UserError

MAX_NON_FINITE_IN_A_ROW = 5


class TrainingDiverged(UserError):
    """The loss went to inf/nan and stayed there; the message says where and what to change."""


def raise_if_diverged(in_a_row: int, epoch: int, batch: int, steps: int, config: Config) -> None:
    if in_a_row > MAX_NON_FINITE_IN_A_ROW:
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}/{config.epochs} at step {batch} of {steps}: the last {in_a_row} "
            f"steps had a non-finite loss or gradient and were skipped. {_advice(config)}")


def check_validation_loss(loss: float, epoch_name: str, config: Config) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(f"training diverged in {epoch_name}: the validation loss is {loss}. {_advice(config)}")


def check_weights(module: nn.Module, epoch_name: str, config: Config) -> None:
    """Refuse to save weights that are not all finite."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDiverged(f"training diverged in {epoch_name}: {name} holds non-finite values. "
                                   f"{_advice(config)}")


def _advice(config: Config) -> str:
    return (f"The learning rate is the likely cause (lr {config.head_lr:g} for the head, "
            f"{config.head_lr * config.backbone_lr_mult:g} for the backbone): train again with a lower one "
            "(--set lr=...). best.pt and last.pt, where written, keep the last sound epoch.")


class NormStatistics:
    """The model's buffers (the norm layers' running statistics and batch counts), saved before a forward pass in
    training mode so that a skipped step can put them back. One flat copy per dtype: two kernels on a GPU, not one
    per layer."""

    def __init__(self, model: nn.Module) -> None:
        self.groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for buffer in model.buffers():
            self.groups.setdefault(buffer.dtype, []).append(buffer)
        self.saved = {dtype: torch.cat([b.detach().reshape(-1) for b in buffers])
                      for dtype, buffers in self.groups.items()}

    def restore(self) -> None:
        with torch.no_grad():
            for dtype, buffers in self.groups.items():
                for buffer, saved in zip(buffers, self.saved[dtype].split([b.numel() for b in buffers])):
                    buffer.copy_(saved.view_as(buffer))

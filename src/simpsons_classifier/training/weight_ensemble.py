"""The run's last step: the weight-space ensemble of where fine-tuning started and where it ended (WiSE-FT).

Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") show that interpolating every weight between the
model fine-tuning started from and the fine-tuned one keeps most of fine-tuning's gain on the training
distribution and more of the start's accuracy under distribution shift than either end. Here the start is the
probe (or grown) head on the pre-trained backbone, a model that already classifies, so the straight line between
the two stays in one basin; a held-out drawing style is such a shift (``benchmarks/recipes.py``).
"""

from __future__ import annotations

import torch


def weight_ensemble(start: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor],
                    alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * finetuned`` for every floating-point tensor (BatchNorm's running statistics
    too); integer buffers (BatchNorm's batch counters) are the fine-tuned model's."""
    if start.keys() != finetuned.keys():
        raise ValueError("the start and fine-tuned weights are of different models")
    return {name: torch.lerp(start[name].to(value), value, alpha) if value.is_floating_point() else value
            for name, value in finetuned.items()}

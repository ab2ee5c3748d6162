"""Running a model over a loader: logits for the evaluation report, loss/top-1/top-5 for each epoch."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


def autocast(device: torch.device, amp: str):
    """bf16/fp16 autocast on CUDA; full precision elsewhere (CPU autocast is slower than fp32 here)."""
    if device.type != "cuda" or amp == "none":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "predicting",
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(each output of ``model`` — a tensor or a tuple of tensors — as float32 over the whole ``loader``, targets)
    with ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    all_outputs, all_targets = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with autocast(device, amp):
            outputs = model(images)
        all_outputs.append([o.float().cpu() for o in (outputs if isinstance(outputs, tuple) else (outputs,))])
        all_targets.append(targets)
    model.train(was_training)
    if not all_outputs:
        return [torch.empty(0, 0)], torch.empty(0, dtype=torch.long)
    return [torch.cat(column) for column in zip(*all_outputs)], torch.cat(all_targets)


def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "predicting",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits N×C float32, targets N) of ``model`` in eval mode over ``loader``."""
    (logits, *_), targets = predict_outputs(model, loader, device, amp, channels_last, progress, desc)
    return logits, targets


def score_sums(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """[loss sum, top-1 hits, top-5 hits, count]: sums, so that shards can be added across processes."""
    if len(targets) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top == targets[:, None]
    loss = F.cross_entropy(logits, targets, reduction="sum").item()
    return [loss, hits[:, 0].sum().item(), hits.any(dim=1).sum().item(), float(len(targets))]


def scores_from_sums(sums: list[float]) -> dict[str, float]:
    loss, top1, top5, count = sums
    count = max(count, 1.0)
    return {"loss": loss / count, "top1": top1 / count, "top5": top5 / count}

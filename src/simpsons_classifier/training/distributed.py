"""Multi-GPU and multi-node training through ``torchrun``: one process per device, rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


MAX_LOADER_WORKERS = 8


def loader_workers(requested: int | None, world_size: int = 1) -> int:
    """``requested`` data-loading processes, or by default one per CPU core that this process's share of the
    machine has (the cores split between the ``world_size`` training processes), at most 8."""
    if requested is not None:
        return requested
    return max(1, min(MAX_LOADER_WORKERS, (os.cpu_count() or 1) // world_size))


def setup() -> Context:
    """Join the process group torchrun describes in the environment, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Context(rank=rank, world_size=world_size, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """DDP registers the parameters that need gradients when it is built, so rebuild it whenever the
    trainable set changes (the unfreeze epoch)."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def sum_across(values: list[float], ctx: Context) -> list[float]:
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_across(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Every process's 1-D ``values`` (of any length) concatenated in rank order, in every process."""
    if not ctx.distributed:
        return values
    gathered: list[torch.Tensor | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, values.cpu())
    return torch.cat(gathered)


def any_across(flag: bool, ctx: Context) -> bool:
    """True in every process when ``flag`` is true in any of them: a decision they all take together."""
    return sum_across([float(flag)], ctx)[0] > 0


def min_across(value: int, ctx: Context) -> int:
    """The least of every process's ``value``, in every process: a count they must all agree on (epochs timed on
    each process's own steps differ by its timing noise, and a process that runs one epoch more waits forever)."""
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def is_main_process() -> bool:
    """True outside torchrun and in its rank-0 process, also after the process group is gone."""
    return int(os.environ.get("RANK", "0")) == 0

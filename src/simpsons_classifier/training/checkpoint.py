"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

``last.pt`` holds everything a resume needs (model, EMA, optimizer, scheduler, epoch): at the end of an epoch no
random state, since every epoch reseeds from the seed and its number; one written mid-epoch (a stop signal) also
holds the epoch's progress and random state. ``best.pt`` holds only what inference needs: the
evaluated (EMA) weights, the class names, the input normalisation and the config.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..models import create_model
from ..run_dir import RunDir
from ..storage import write_atomic

FORMAT_VERSION = 1
"""Version of the checkpoint payloads (``last.pt`` and ``best.pt``)."""


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file then rename, so an interruption or a full disk never leaves a half-written
    checkpoint (a failed write is one :class:`StorageError` naming the file; the previous checkpoint stays)."""
    # Into a file handle, not a file name: torch's own file writer reports a full disk as an "enforce fail" with
    # neither the file nor the cause, where Python's file object raises OSError(ENOSPC).
    write_atomic(path, lambda handle: torch.save(payload, handle))


def read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError) as error:  # truncated, not torch's, foreign
        # torch's own message is a zip-reader internal, or advice to load with weights_only=False: not ours to give
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}); it may have been cut short "
                         "or replaced by another file") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a simpsons-classifier checkpoint of format {FORMAT_VERSION}")
    return payload


def weights_payload(weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Weights alone (``start.pt``), readable with :func:`read`."""
    return {"format": FORMAT_VERSION, "model": weights}


def inference_payload(
    weights: dict[str, torch.Tensor], config: Config, classes: list[str], normalisation: dict, epoch: int
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "model": weights,
        "config": config.to_dict(),
        "classes": list(classes),
        "mean": list(normalisation["mean"]),
        "std": list(normalisation["std"]),
        "epoch": epoch,
    }


@dataclass
class LoadedModel:
    model: nn.Module
    classes: list[str]
    config: Config
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_model(run_dir: str | Path | RunDir, which: str = "best") -> LoadedModel:
    """The model of a finished (or running) run, in eval mode on the CPU."""
    path = RunDir(run_dir).checkpoint(which)
    payload = read(path)
    config = Config.from_dict(payload["config"], source=str(path))
    model = create_model(config.backbone, len(payload["classes"]), weights="none")
    model.load_state_dict(payload["model"])
    model.eval()
    return LoadedModel(model, payload["classes"], config, tuple(payload["mean"]), tuple(payload["std"]))

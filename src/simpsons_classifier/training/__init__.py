"""Fitting a model: the training loop, checkpoints, validation and distributed set-up."""

from .checkpoint import LoadedModel, load_model
from .trainer import resume, train

__all__ = ["LoadedModel", "load_model", "resume", "train"]

"""Tiny trained runs for the inference, export and serve tests: seconds on the CPU, calibrated like a real run."""

from __future__ import annotations

from pathlib import Path

from synthetic import make_dataset, tiny_config

from simpsons_classifier.training import train
from simpsons_classifier.workflow import finish_run


def train_tiny_run(root: Path, classes: int = 4, **overrides) -> Path:
    """A finished run (calibrated, evaluated, reported) of a resnet10t at 32 px on ``classes`` synthetic
    characters, under ``root``."""
    data = make_dataset(root / "data", classes=classes)
    run = train(tiny_config(**overrides), data, root / "run", progress=False)
    finish_run(run, progress=False)
    return run.path

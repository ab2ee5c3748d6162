"""Stopping a training run in this process as Ctrl-C would, at a chosen step."""

from __future__ import annotations

import os
import signal

from simpsons_classifier.training import trainer


def ctrl_c_at_step(monkeypatch, number: int) -> None:
    """Training in this process gets SIGINT, as Ctrl-C sends it, during step ``number`` (counted from 0)."""
    train_step = trainer.train_step

    def step(state, *args, **kwargs):
        if state.step == number:
            os.kill(os.getpid(), signal.SIGINT)
        return train_step(state, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", step)

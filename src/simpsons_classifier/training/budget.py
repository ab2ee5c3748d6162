"""``simpsons train --budget 10m``: size the run to a wall-clock budget from a measured step time.

Before the first epoch the loop times a few real training steps (data loading and augmentation included), on a
copy of the weights and optimiser state that is put back afterwards, so the run itself is the same as one given
that many epochs. An epoch is its steps (the first one paying the loader's start-up) plus a validation pass; what
follows the last epoch is a pass over the training images and a few over the validation images. Both passes are
timed whole where the probe head made them, else estimated from a few validation batches. The epochs that fit
are written into the run's config, which is what a resume reads. The per-epoch line then shows the time left.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..config import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
TIMED_STEPS = 6
"""Training steps timed after the first one, which pays the loader's start-up (as each epoch's first step does)."""
FINISH_SHARE = 0.1
"""The least share of the budget kept for what follows training (calibration, evaluation, report)."""
OVERRUN_TOLERANCE = 0.05
"""How far past the budget a run's estimate may go before the plan says the budget is too short."""
FINISH_VALIDATION_PASSES = 7
"""What follows the last epoch, in passes over the validation images: the weight ensemble's score, the
evaluation, the score on unseen backgrounds (about two: its images are composed on the fly) and the report's
pictures (about three); beside one pass over the training images for the unknown-character rule's features. On
the stand-in with EfficientNet-Lite0 on a 2-core CPU that took 57 s, estimated at 23 s + 7 x 4.6 s = 55 s (README,
"Configuration": the 3-minute budget)."""


@dataclass(frozen=True)
class PassTimes:
    """Seconds of one inference pass over the training images and over the validation images."""

    train: float
    val: float


def parse_budget(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1h30m"``, ``"2h"`` -> seconds."""
    match = _BUDGET.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"--budget {text!r}: expected a duration like 90s, 10m, 1h30m")
    seconds = sum(float(v) * _UNITS[u] for v, u in zip(match.groups(), "hms") if v)
    if seconds <= 0:
        raise ConfigError(f"--budget {text!r}: must be longer than zero")
    return seconds


def finishing_seconds(budget_seconds: float, passes: PassTimes) -> float:
    """Time to keep for what follows training: its passes over the images, and at least ``FINISH_SHARE``."""
    return max(FINISH_SHARE * budget_seconds, passes.train + FINISH_VALIDATION_PASSES * passes.val)


def epochs_within(budget_seconds: float, spent_seconds: float, epoch_seconds: float, max_epochs: int,
                  finish_seconds: float) -> int:
    """Whole epochs that fit in what is left of the budget after the time spent and the finishing time; at least
    one, at most ``max_epochs``."""
    left = budget_seconds - spent_seconds - finish_seconds
    return max(1, min(max_epochs, math.floor(left / epoch_seconds))) if epoch_seconds > 0 else max_epochs


def plan_summary(budget_seconds: float, spent_seconds: float, epoch_seconds: float, finish_seconds: float,
                 epochs: int) -> str:
    """The line that says how the budget is spent; when even one epoch does not fit, how long the run will take
    instead, so that a budget too short is said at once and not found out at the end."""
    line = (f"budget {format_duration(budget_seconds)}: about {format_duration(epoch_seconds)} an epoch and "
            f"{format_duration(finish_seconds)} to evaluate and report, so {epochs} epoch{'s' if epochs > 1 else ''}")
    expected = spent_seconds + epochs * epoch_seconds + finish_seconds
    if expected > budget_seconds * (1 + OVERRUN_TOLERANCE):
        line += (f"; with {format_duration(spent_seconds)} spent already, the run will take about "
                 f"{format_duration(expected)}, the least a run of one epoch needs")
    return line


@dataclass(frozen=True)
class ItemTimes:
    """How long the items of a loader took: the first one, the loader's start-up included, and each one after."""

    first: float
    per_item: float

    def total(self, items: int) -> float:
        """Seconds for a pass over ``items`` items: the start-up is paid once a pass."""
        return self.first + (items - 1) * self.per_item if items else 0.0


def time_items(items: Iterable, work: Callable, count: int) -> ItemTimes:
    """Times ``work(item)`` over the first item and up to ``count`` more; ``per_item`` is 0 when the iterable
    runs out before a second item."""
    iterator: Iterator = iter(items)
    first, timed, started = 0.0, 0, time.perf_counter()
    for i, item in enumerate(iterator):
        work(item)
        if i == 0:
            first = time.perf_counter() - started
            started = time.perf_counter()
        timed = i
        if i >= count:
            break
    return ItemTimes(first, (time.perf_counter() - started) / timed if timed else 0.0)


class Restored:
    """``with Restored(state):`` puts back the ``state_dict()`` of each object given on exit."""

    def __init__(self, *objects) -> None:
        self.objects = objects

    def __enter__(self) -> None:
        self.saved = [copy.deepcopy(o.state_dict()) for o in self.objects]

    def __exit__(self, *exc) -> None:
        for o, state in zip(self.objects, self.saved):
            o.load_state_dict(state)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

"""``simpsons train --budget 10m``: size the run to a wall-clock budget from a measured step time.

Before the first epoch the loop times a few real training steps (data loading and augmentation included) and a
few validation batches, on a copy of the weights and optimiser state that is put back afterwards, so the run
itself is the same as one given that many epochs. The epochs that fit are written into the run's config, which is
what a resume reads. The per-epoch line then shows the time left.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator

from ..config import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
TIMED_STEPS = 6
"""Training steps timed (after one untimed step that pays the start-up costs)."""
FINISH_SHARE = 0.1
"""Share of the budget kept for what follows training (calibration, evaluation, report)."""


def parse_budget(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1h30m"``, ``"2h"`` -> seconds."""
    match = _BUDGET.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"--budget {text!r}: expected a duration like 90s, 10m, 1h30m")
    seconds = sum(float(v) * _UNITS[u] for v, u in zip(match.groups(), "hms") if v)
    if seconds <= 0:
        raise ConfigError(f"--budget {text!r}: must be longer than zero")
    return seconds


def epochs_within(budget_seconds: float, spent_seconds: float, epoch_seconds: float, max_epochs: int) -> int:
    """Whole epochs that fit in what is left of the budget after the time spent and the finishing share; at least
    one, at most ``max_epochs``."""
    left = budget_seconds * (1 - FINISH_SHARE) - spent_seconds
    return max(1, min(max_epochs, math.floor(left / epoch_seconds))) if epoch_seconds > 0 else max_epochs


def time_per_item(items: Iterable, work: Callable, count: int) -> float:
    """Seconds per item of ``work(item)`` over ``count`` items after one untimed warm-up item; 0 when the
    iterable runs out before any is timed."""
    iterator: Iterator = iter(items)
    timed, started = 0, None
    for i, item in enumerate(iterator):
        if i == 1:
            started = time.perf_counter()
        work(item)
        timed = i
        if i >= count:
            break
    return (time.perf_counter() - started) / timed if started is not None and timed else 0.0


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

"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (``docker stop``, a batch scheduler's time limit).

While a run trains, the first of these signals only asks it to stop: the loop finishes the step it is in, writes
a checkpoint that records how far into the epoch it got, and ends with :class:`~simpsons_classifier.errors.
Interrupted`, whose message names the command that continues the run. A second signal stops at once (the last
checkpoint written stays; writes are atomic). DataLoader workers ignore both signals, which a terminal or a
scheduler sends to the whole process group: the main process shuts them down as it stops, instead of losing them
halfway through a batch it is waiting for.
"""

from __future__ import annotations

import os
import signal
import threading

from ..errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """``with StopSignals(resume_hint) as stop:`` records the first stop signal in ``stop.signum`` instead of
    ending the process; ``resume_hint`` is said when a second one ends it at once. Outside the main thread (where
    Python cannot take signals) it records nothing."""

    def __init__(self, resume_hint: str) -> None:
        self.resume_hint = resume_hint
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interrupted(self, message: str) -> Interrupted:
        """What ends the run once the processes agreed to stop (one the signal did not reach reports SIGTERM)."""
        return Interrupted(self.signum or signal.SIGTERM, message)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGTERM).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise Interrupted(signum, f"stopped at once by a second {name}; {self.resume_hint}")
        self.signum = signum
        # os.write, not print: a handler that prints while tqdm is writing to stderr is a reentrant call
        os.write(2, f"\n{name}: stopping after this step ({name} again stops at once)\n".encode())


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the main process decides when workers stop."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)

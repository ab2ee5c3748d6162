"""One writer per run folder.

Training, resuming and finishing a run hold an exclusive ``flock`` on ``RUN/.lock`` while they write; under
torchrun, rank 0 holds it, the one process that writes. A second process is refused with the holder's PID and host.
The kernel releases the lock when its process ends, however it ends (``kill -9`` included), so a lock left by a
process that is gone is taken over at once, with a note naming it: the PID in the file is what the note and the
refusal show, not what decides (a PID can be reused; the ``flock`` cannot outlive its process).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO

from .errors import UserError
from .run_dir import RunDir
from .storage import writing


class RunInUseError(UserError):
    """Another process is writing the run folder."""


@contextmanager
def hold_run(run: RunDir, enabled: bool = True) -> Iterator[None]:
    """Hold ``run``'s lock for the ``with`` block (creating the folder); nothing when not ``enabled`` (the
    processes of a distributed run that do not write)."""
    if not enabled:
        yield
        return
    run.make()
    with writing(run.lock):  # a read-only run folder is one error naming it
        handle = open(run.lock, "a+")
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"{run} is in use by {_describe(_holder(handle)) or 'another process'}: wait for it "
                                "to end, or stop it (Ctrl-C or SIGTERM saves a run that --resume continues)") from None
        left = _holder(handle)
        if left:
            print(f"note: {run} was left locked by {_describe(left)}, which has ended; taking it over",
                  file=sys.stderr)
        with writing(run.lock):
            _write(handle, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                       "since": datetime.now().isoformat(timespec="seconds")}))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # ended without being killed: nothing for the next holder to take over
                _write(handle, "")


def _holder(handle: IO[str]) -> dict:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except json.JSONDecodeError:  # being written this instant
        return {}


def _describe(holder: dict) -> str:
    if "pid" not in holder:
        return ""
    here = holder.get("host") in (None, socket.gethostname())
    return f"process {holder['pid']}" + ("" if here else f" on {holder['host']}") + f" (since {holder.get('since')})"


def _write(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()

"""Writing a run's files so that a failed write leaves the previous version in place and says what happened.

Every file written into a run folder (checkpoints, metrics, curves, the config, the data description and split,
evaluation tables and pictures, explanation pictures, the report) goes through :func:`write_atomic` (or its text,
JSON and figure forms): the new content goes to a temporary file beside the target, is flushed to the disk, and
only then renamed over it. When the disk is full or the folder is not writable, the temporary file is removed,
the previous version of the file is untouched, and one :class:`StorageError` names the file and the cause
(``ENOSPC``, ``EACCES``...), which the command line prints as one ``error:`` line. Folders are made with
:func:`make_folder`, which fails the same way.

:func:`check_writable` is the cheap test a command makes before its long work (training, evaluating,
explaining), so that a full disk or a read-only folder is found before that work, not after it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_ADVICE = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EACCES: "make {folder} writable for this user",
    errno.EPERM: "make {folder} writable for this user",
    errno.EROFS: "the file system is mounted read-only; write the run somewhere else",
}

STORAGE_ERRNOS = frozenset(_ADVICE)
"""The causes of a failed write that are the machine's state, not a bug: full disk or quota, no permission,
read-only file system."""


class StorageError(UserError):
    """A file that could not be written; the message names it, the cause and what was kept."""

    def __init__(self, path: str | Path, error: OSError) -> None:
        self.path = Path(path)
        self.errno = error.errno
        code = errno.errorcode.get(error.errno or 0, "")
        cause = (error.strerror or str(error)) + (f" [{code}]" if code else "")
        kept = f"; the previous {self.path.name} is unchanged" if self.path.is_file() else ""
        folder = self.path if self.path.is_dir() else self.path.parent  # the one whose permissions refused
        advice = f" ({_ADVICE[error.errno].format(folder=folder)})" if error.errno in _ADVICE else ""
        super().__init__(f"cannot write {self.path}: {cause}{advice}{kept}")


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, flushed to the disk, then renamed over ``path``: a
    reader (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if (cause := _os_error(error)) is not None:
            raise StorageError(path, cause) from error
        raise


def _os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind ``error``: itself, or one it was raised while handling. torch.save's zip writer, told of
    a full disk by the file object, goes on to fail closing the archive with a RuntimeError ("enforce fail at
    inline_container.cc") raised in the middle of handling the OSError."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text.encode()))


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2))


def write_figure(fig: Figure, path: str | Path, dpi: int) -> None:
    """A matplotlib figure as a PNG, written atomically; the figure is closed, written or not."""
    import matplotlib.pyplot as plt

    try:
        write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
    finally:
        plt.close(fig)


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write in the ``with`` block (full disk, no permission, read-only file system) into one
    :class:`StorageError` naming the file (the one the system names, else ``path``); other errors pass."""
    try:
        yield
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        raise StorageError(error.filename or path, error) from error


def make_folder(path: str | Path) -> Path:
    """``path`` and its parents, made when missing; a folder that cannot be made is a :class:`StorageError`."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


PROBE_BYTES = 4096


def check_writable(folder: str | Path, needed_bytes: int = 0) -> None:
    """Fail now when ``folder`` cannot take ``needed_bytes`` more: a small file is written, flushed and removed
    (an unwritable, read-only or full folder fails here), and the free space is compared with ``needed_bytes``."""
    folder = Path(folder)
    probe = folder / f".write-check-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(bytes(PROBE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
        free = shutil.disk_usage(folder).free
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise StorageError(folder, error) from error
    if free < needed_bytes:
        shortage = OSError(errno.ENOSPC, f"{free / 1e6:.0f} MB free, but the run's checkpoints need about "
                                         f"{needed_bytes / 1e6:.0f} MB")
        raise StorageError(folder, shortage)

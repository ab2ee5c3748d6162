"""The ``simpsons`` command: a thin layer that parses arguments and calls the package.

Each sub-command lives in its own module under ``commands/`` and registers itself through ``register``;
adding a command is one new module and one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import errno
import sys

from .commands import ablate, compare, data, detect, discover, evaluate, explain, export, predict, report, serve
from .commands import show_config
from .commands import train
from .commands import augment_preview
from .errors import Interrupted, UserError

COMMANDS = (train, evaluate, explain, report, ablate, compare, predict, discover, detect, export, serve, data,
            augment_preview, show_config)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, FileExistsError, ValueError)
"""What a user can cause (ConfigError and the data errors are ValueErrors): one ``error:`` line, exit 2. Anything
else is a bug and keeps its traceback, but for an OSError whose cause is the machine's state (a full disk, no
permission, a read-only file system: ``storage.STORAGE_ERRNOS``), raised by a write that does not go through
``storage.write_atomic``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simpsons", description="Train, evaluate and use a character classifier.")
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0 done, 2 a usage or user error (argparse's own included), 128 + the signal when stopped."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument argparse has already explained
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.handler(args)
    except Interrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        from .storage import STORAGE_ERRNOS

        if error.errno not in STORAGE_ERRNOS:
            raise
        where = f"cannot write {error.filename}" if error.filename else "cannot write a file"
        print(f"error: {where}: {error.strerror} [{errno.errorcode[error.errno]}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``simpsons`` command: a thin layer that parses arguments and calls the package.

Each sub-command lives in its own module under ``commands/`` and registers itself through ``register``;
adding a command is one new module and one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from .commands import ablate, compare, data, evaluate, explain, export, predict, report, serve, show_config, train
from .commands import augment_preview
from .errors import UserError

COMMANDS = (train, evaluate, explain, report, ablate, compare, predict, export, serve, data, augment_preview,
            show_config)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, FileExistsError, ValueError)
"""What a user can cause (ConfigError and the data errors are ValueErrors): one ``error:`` line, exit 2. Anything
else is a bug and keeps its traceback."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simpsons", description="Train, evaluate and use a character classifier.")
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subcommands)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

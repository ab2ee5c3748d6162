"""``simpsons config``: the resolved config, and how it differs from the reference recipe."""

from __future__ import annotations

import argparse

from ..config import Config
from . import add_config_arguments


def register(subcommands) -> None:
    parser = subcommands.add_parser("config", help="print the resolved config and its differences from the reference")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = Config.load(args.config, args.set)
    differences = config.differences()
    for key, value in config.to_dict().items():
        note = f"   # reference: {differences[key][1]!r}" if key in differences else ""
        print(f"{key}: {value!r}{note}")
    return 0

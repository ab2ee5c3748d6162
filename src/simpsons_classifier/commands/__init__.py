"""Sub-commands of ``simpsons``; each module has ``register(subparsers)``."""

import argparse

from ..run_dir import RunDir

RUN_HELP = "a run folder: what simpsons train --out wrote"


def trained_run(value: str) -> str:
    """``--run``'s check, so that a wrong folder is refused before any model loads, saying what to run."""
    reason = RunDir(value).why_no_model()
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return value


def add_run_argument(parser: argparse.ArgumentParser, needs_model: bool = True) -> None:
    """``--run RUN``; ``needs_model=False`` where the run's own model is not what the command reads (a detector)."""
    parser.add_argument("--run", required=True, type=trained_run if needs_model else str, help=RUN_HELP)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config keys (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")

"""Sub-commands of ``simpsons``; each module has ``register(subparsers)``."""

import argparse

RUN_HELP = "a run folder: what simpsons train --out wrote"


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help=RUN_HELP)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config keys (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")

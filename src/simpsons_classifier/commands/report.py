"""``simpsons report``: ``RUN/report.html``, one self-contained page about a run."""

from __future__ import annotations

import argparse

from . import add_run_argument


def register(subcommands) -> None:
    parser = subcommands.add_parser("report", help="write RUN/report.html (evaluates and explains first if needed)")
    add_run_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    print(f"report: {build_report(args.run)}")
    return 0

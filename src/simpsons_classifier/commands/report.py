"""``simpsons report``: ``RUN/report.html``, one self-contained page about a run."""

from __future__ import annotations

import argparse


def register(subcommands) -> None:
    parser = subcommands.add_parser("report", help="write RUN/report.html (evaluates and explains first if needed)")
    parser.add_argument("--run", required=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    print(f"report: {build_report(args.run)}")
    return 0

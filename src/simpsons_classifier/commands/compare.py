"""``simpsons compare``: the ablation table built from finished runs."""

from __future__ import annotations

import argparse

from . import trained_run


def register(subcommands) -> None:
    parser = subcommands.add_parser("compare", help="compare finished runs in one table")
    parser.add_argument("runs", nargs="+", metavar="RUN", type=trained_run,
                        help="run folders (what simpsons train --out wrote)")
    parser.add_argument("--out", default=".", help="where comparison.md and comparison.html go (default: here)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report.compare import write_comparison

    md_path, html_path, markdown = write_comparison(args.runs, args.out, "comparison")
    print(f"{markdown}\n{md_path}, {html_path}")
    return 0

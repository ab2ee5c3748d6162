"""``simpsons ablate``: train several configs on one split and write ``OUT/ablation.md`` / ``.html``."""

from __future__ import annotations

import argparse


def register(subcommands) -> None:
    parser = subcommands.add_parser("ablate", help="train several configs on the same split and compare them")
    parser.add_argument("--data", required=True, help="folder with one sub-folder of images per character")
    parser.add_argument("--configs", nargs="+", required=True, metavar="YAML", help="one run per file, OUT/<stem>")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key in every config")
    parser.add_argument("--out", required=True, help="folder for the runs and the table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..ablation import ablate

    md_path, html_path, markdown = ablate(args.data, args.configs, args.set, args.out)
    print(f"\n{markdown}\n{md_path}, {html_path}")
    return 0

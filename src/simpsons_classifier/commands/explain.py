"""``simpsons explain``: Grad-CAM, kernel and feature-map pictures of a run, in ``RUN/explain/``."""

from __future__ import annotations

import argparse

from . import add_run_argument


def register(subcommands) -> None:
    parser = subcommands.add_parser("explain", help="Grad-CAM, kernels and feature maps of a run's best model")
    add_run_argument(parser)
    parser.add_argument("--images", nargs="+", metavar="PATH",
                        help="explain these images or folders (default: the run's validation images)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..explain import explain_run

    written = explain_run(args.run, args.images)
    folder = written[0].parent
    print(f"{len(written)} pictures in {folder}/: " + ", ".join(str(p.relative_to(folder)) for p in written))
    return 0

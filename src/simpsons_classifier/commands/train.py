"""``simpsons train``: a new run, or ``--resume RUN``; ends by evaluating the best checkpoint and writing
``RUN/report.html``."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import Config, ConfigError
from . import add_config_arguments
from .evaluate import evaluate_and_print


def register(subcommands) -> None:
    parser = subcommands.add_parser("train", help="train a model (ends by evaluating it)")
    parser.add_argument("--data", help="folder with one sub-folder of images per character")
    parser.add_argument("--out", help="run folder to create")
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report
    from ..training import resume, train

    if args.resume:
        if args.data or args.out or args.config or args.set:
            raise ConfigError("--resume RUN continues a run with its own data and config: give it alone")
        run_dir = resume(args.resume)
    else:
        if not (args.data and args.out):
            raise ConfigError("simpsons train needs --data DIR and --out RUN (or --resume RUN)")
        config = Config.load(args.config, args.set)
        try:
            run_dir = train(config, args.data, args.out)
        except KeyboardInterrupt:
            print(f"\ninterrupted: continue with  simpsons train --resume {args.out}", file=sys.stderr)
            return 130
    if int(os.environ.get("RANK", "0")) == 0:
        calibrate_and_print(run_dir)  # first, so that the evaluation reports what the stored threshold accepts
        evaluate_and_print(run_dir, robustness=True)
        print(f"report: {build_report(run_dir)}")
    return 0


def calibrate_and_print(run_dir: os.PathLike) -> None:
    from ..evaluation.openset import OPENSET_FILE, calibrate_run

    calibration = calibrate_run(run_dir)
    print(f"unknown-character threshold: {calibration['score']} >= {calibration['threshold']:.3f} accepts "
          f"{100 * calibration['val_accepted']:.1f}% of validation images ({run_dir}/{OPENSET_FILE})")

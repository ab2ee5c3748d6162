"""``simpsons detect train | evaluate | predict``: find every character in a frame."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from . import add_config_arguments, add_run_argument

FORMATS = ("json", "csv")


def register(subcommands) -> None:
    parser = subcommands.add_parser("detect", help="multi-character detection: train, evaluate, predict")
    actions = parser.add_subparsers(required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a detector on scenes composed from a classification dataset")
    train.add_argument("--data", help="folder with one sub-folder of images per character")
    train.add_argument("--out", help="run folder: a new one, or one holding a trained classifier (the detector "
                                     "then keeps its split and starts from its backbone)")
    train.add_argument("--boxes", metavar="FILE",
                       help="real boxes to train on besides the scenes: Kaggle annotation.txt or COCO JSON "
                            "(config key boxes)")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted detector run")
    add_config_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = actions.add_parser("evaluate", help="score a run's detector on its held-out scenes")
    add_run_argument(evaluate, needs_model=False)
    evaluate.set_defaults(handler=run_evaluate)

    predict = actions.add_parser("predict", help="the characters found in images, with their boxes")
    add_run_argument(predict, needs_model=False)
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively")
    predict.add_argument("--format", choices=FORMATS, default="json", help="output format (default json)")
    predict.add_argument("--min-score", type=float, default=None, help="report boxes scoring at least this")
    predict.add_argument("--draw", metavar="DIR", help="also write each image with its boxes drawn, as DIR/NAME.png")
    predict.set_defaults(handler=run_predict)


def run_train(args: argparse.Namespace) -> int:
    from ..detection.config import DetectConfig
    from ..detection.evaluate import evaluate_detector
    from ..detection.train import resume_detector, train_detector

    if args.resume:
        if args.data or args.out or args.config or args.set or args.boxes:
            raise ValueError("--resume RUN continues a detector run with its own data and config: give it alone")
        run = resume_detector(args.resume)
    else:
        if not (args.data and args.out):
            raise ValueError("simpsons detect train needs --data DIR and --out RUN (or --resume RUN)")
        config = DetectConfig.load(args.config, args.set)
        if args.boxes:
            config = DetectConfig.from_dict({"boxes": str(Path(args.boxes).resolve())}, source="--boxes", base=config)
        run = train_detector(config, args.data, args.out)
    print_evaluation(evaluate_detector(run), run)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..detection.evaluate import evaluate_detector

    print_evaluation(evaluate_detector(args.run), args.run)
    return 0


def print_evaluation(evaluation, run) -> None:
    from ..run_dir import RunDir

    fates = evaluation.fates
    print(f"held-out scenes: {evaluation.num_scenes} ({evaluation.num_boxes} characters)")
    print(f"  mAP@[.5:.95] {evaluation.map:.3f}   mAP@.5 {evaluation.map50:.3f}   mAP@.75 {evaluation.map75:.3f}"
          f"   (small {evaluation.map_small:.3f}, medium {evaluation.map_medium:.3f}, large "
          f"{evaluation.map_large:.3f})")
    print(f"  scene tags: mAP {evaluation.tags_map:.3f}   precision {evaluation.tags_precision:.3f}   recall "
          f"{evaluation.tags_recall:.3f}")
    print(f"  characters found {fates.found}, named wrongly {fates.wrong_name}, missed {fates.missed}")
    worst = ", ".join(f"{name} {ap:.2f}" for name, ap in evaluation.worst_classes())
    print(f"  worst AP: {worst}")
    if fates.confusions:
        print("  most confused: " + ", ".join(f"{t} as {g} ({n})" for t, g, n in fates.confusions[:5]))
    eval_dir = RunDir(run).eval_dir()
    print(f"  outputs: {eval_dir.detection}, {eval_dir.detection_per_class}, {eval_dir.detections}")


def run_predict(args: argparse.Namespace) -> int:
    from ..detection.predict import detect_files

    results = detect_files(args.run, args.paths, min_score=args.min_score, draw_dir=args.draw)
    if args.format == "json":
        json.dump([result.to_dict() for result in results], sys.stdout, indent=2)
        print()
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "label", "score", "x1", "y1", "x2", "y2", "error"])
        for result in results:
            if result.error:
                writer.writerow([result.path, "", "", "", "", "", "", result.error])
            for found in result.detections:
                writer.writerow([result.path, found.label, f"{found.score:.4f}", *(f"{v:.1f}" for v in found.box),
                                 ""])
    unreadable = [result for result in results if result.error]
    for result in unreadable:
        print(f"skipped {result.path}: {result.error}", file=sys.stderr)
    return 1 if results and len(unreadable) == len(results) else 0

"""``simpsons evaluate``: a run's best model on its validation split or on another labelled folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from . import add_run_argument
from ..run_dir import EvalDir, RunDir

if TYPE_CHECKING:
    from ..evaluation.results import EvalResult


def register(subcommands) -> None:
    parser = subcommands.add_parser("evaluate", help="evaluate a run's best model")
    add_run_argument(parser)
    parser.add_argument("--data", help="another labelled folder (default: the run's validation split)")
    parser.add_argument("--data-root", metavar="NEWROOT",
                        help="the run's dataset moved to NEWROOT (the folder of class folders): its validation "
                             "split is read from there, now and later (recorded in RUN/dataset.json). Not --data, "
                             "which evaluates on other images instead of the run's split")
    parser.add_argument("--labels-from-filenames", action="store_true",
                        help="flat folder whose file names carry the label (bart_simpson_12.jpg)")
    parser.add_argument("--out", help="where to write (default RUN/eval for the validation split, RUN/eval-FOLDER "
                                      "for --data FOLDER; -tta added with --tta)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--robustness", action="store_true",
                        help="also score the images pasted onto backgrounds never used in training")
    parser.add_argument("--far", action="append", default=[], metavar="DIR",
                        help="a folder of images of no known character (e.g. another cartoon), added to the "
                             "built-in photos and noise as far-away unknowns in the open-set figures; repeatable")
    parser.add_argument("--recalibrate", action="store_true",
                        help="choose the unknown-character score and threshold again (RUN/openset.json), e.g. for "
                             "a run trained before a newer version's scores")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.run_data import RunData, repoint_data
    from ..evaluation import evaluate_run

    run_dir = RunDir(args.run)
    if args.data_root:
        print(repoint_data(run_dir, args.data_root))
    elif args.data is None:
        RunData.read(run_dir).check_root()
    result = evaluate_run(run_dir, args.data, args.labels_from_filenames, args.out, tta=args.tta,
                          robustness=args.robustness, far_dirs=args.far, recalibrate=args.recalibrate)
    out_dir = Path(args.out) if args.out else run_dir.eval_dir(args.tta, args.data).path
    print_evaluation(result, run_dir, out_dir, f"{args.data or 'validation'}{' with TTA' if args.tta else ''}")
    return 0


def print_evaluation(result: EvalResult, run_dir: RunDir, out_dir: Path, title: str) -> None:
    """The figures of an evaluation, and where its files are."""
    from ..evaluation.uncertainty import format_interval

    lines = [
        f"\n{title}: {result.num_images} images, {result.num_classes} classes",
        f"  top-1 {100 * result.top1:.1f}% (95% interval {format_interval(result.top1_interval)})   "
        f"top-5 {100 * result.top5:.1f}%   loss {result.loss:.3f}   macro-F1 {result.macro_f1:.3f}",
    ]
    if result.robustness_top1 is not None:
        lines.append(f"  on unseen backgrounds: top-1 {100 * result.robustness_top1:.1f}%")
    if (openset := result.openset) is not None:
        far_images = sum(openset.far_images.values())
        lines.append(f"  unknown characters: the {openset.chosen} threshold accepts {100 * openset.known_accepted:.1f}% "
                     f"of known images, {100 * openset.near_accepted:.1f}% of {openset.near_images} held-out "
                     f"characters' images (near) and {100 * openset.far_accepted:.1f}% of {far_images} far-away "
                     "images")
        lines.append(f"    {'score':<12} {'near AUROC':>10} {'near FPR95':>10} {'far AUROC':>10} {'far FPR95':>10}")
        for name, near in openset.near.items():
            far = openset.far[name]
            lines.append(f"    {name:<12} {near.auroc:>10.3f} {near.fpr_at_95_tpr:>10.3f} {far.auroc:>10.3f} "
                         f"{far.fpr_at_95_tpr:>10.3f}{'   (chosen)' if name == openset.chosen else ''}")
    for group, (images, top1) in result.per_group_top1.items():
        lines.append(f"    {group:<14} {images:>5} images   top-1 {100 * top1:.1f}% "
                     f"({format_interval(result.group_interval(group))})")
    written = EvalDir(out_dir)
    if result.num_skipped:
        lines.append(f"  {result.num_skipped} file{'s' if result.num_skipped > 1 else ''} left out (unreadable, or "
                     f"of a character the model does not know): {written.skipped}")
    lines.append(f"  outputs: {written.path}/ (" + ", ".join(
        p.name for p in (written.metrics, written.per_class, written.confusion_png, written.confused_pairs,
                         written.predictions)) + f"); the run: {run_dir}/")
    print("\n".join(lines))

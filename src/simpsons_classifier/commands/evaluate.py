"""``simpsons evaluate``: a run's best model on its validation split or on another labelled folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subcommands) -> None:
    parser = subcommands.add_parser("evaluate", help="evaluate a run's best model")
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", help="another labelled folder (default: the run's validation split)")
    parser.add_argument("--labels-from-filenames", action="store_true",
                        help="flat folder whose file names carry the label (bart_simpson_12.jpg)")
    parser.add_argument("--out", help="where to write (default RUN/eval, RUN/eval-tta with --tta)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--robustness", action="store_true",
                        help="also score the images pasted onto backgrounds never used in training")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    evaluate_and_print(Path(args.run), args.data, args.labels_from_filenames, args.out, args.tta, args.robustness)
    return 0


def evaluate_and_print(
    run_dir: Path,
    data: str | None = None,
    labels_from_filenames: bool = False,
    out: str | None = None,
    tta: bool = False,
    robustness: bool = False,
) -> dict:
    from ..evaluation import evaluate_run

    metrics = evaluate_run(run_dir, data, labels_from_filenames, out, tta=tta, robustness=robustness)
    out_dir = Path(out) if out else Path(run_dir) / ("eval-tta" if tta else "eval")
    lines = [
        f"\n{'validation' if data is None else data}{' with TTA' if tta else ''}: {metrics['num_images']} images, "
        f"{metrics['num_classes']} classes",
        f"  top-1 {100 * metrics['top1']:.1f}%   top-5 {100 * metrics['top5']:.1f}%   loss {metrics['loss']:.3f}   "
        f"macro-F1 {metrics['macro_f1']:.3f}",
    ]
    if "robustness_top1" in metrics:
        lines.append(f"  on unseen backgrounds: top-1 {100 * metrics['robustness_top1']:.1f}%")
    if "openset" in metrics:
        openset = metrics["openset"]
        lines.append(f"  unknown characters ({openset['heldout_images']} held-out images): the {openset['score']} "
                     f"threshold accepts {100 * openset['known_accepted']:.1f}% of known and "
                     f"{100 * openset['heldout_accepted']:.1f}% of held-out images")
        lines.append("    " + "   ".join(f"{name}: AUROC {s['auroc']:.3f}, FPR at 95% TPR {s['fpr_at_95_tpr']:.3f}"
                                         for name, s in openset["scores"].items()))
    for group, (images, top1) in metrics.get("per_group_top1", {}).items():
        lines.append(f"    {group:<14} {images:>5} images   top-1 {100 * top1:.1f}%")
    lines.append(f"  outputs: {run_dir}/ (best.pt, metrics.csv, curves.png), {out_dir}/ (metrics.json, "
                 "per_class.csv, confusion_matrix.png, confused_pairs.csv, predictions.csv)")
    print("\n".join(lines))
    return metrics

"""Class imbalance: the same recipe with and without square-root class-balanced sampling on an imbalanced copy
of the stand-in, compared on macro-F1 (every class counts the same) and top-1.

    python benchmarks/imbalance.py --data data/standin --out runs/imbalance [--epochs 8]

The copy keeps every held-out image (Dream World and Gen-7 box art: the validation set is unchanged) but only
a geometrically shrinking share of each character's training images: the first character keeps all of them,
the last ``--rarest`` (a ratio like the Kaggle Simpsons folders', from thousands down to a handful). Both runs
share one split.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from simpsons_classifier.config import Config
from simpsons_classifier.data.scan import scan_dataset
from simpsons_classifier.data.split import source_group
from simpsons_classifier.training import train
from simpsons_classifier.training.sampling import imbalance_ratio
from simpsons_classifier.workflow import finish_run

HELD_OUT = ["dreamworld", "gen7x"]


def imbalanced_copy(data: Path, out: Path, rarest: int) -> Path:
    """Symbolic links to all held-out images and a shrinking number of training images per character, drawn at
    random (seeded) so a rare character keeps a mix of its sources."""
    scan = scan_dataset(data, progress=False)
    classes = scan.classes
    rng = np.random.default_rng(0)
    for rank, label in enumerate(classes):
        files = sorted(s.path for s in scan.samples if s.label == label)
        held = [f for f in files if source_group(f) in HELD_OUT]
        training = list(rng.permutation([f for f in files if source_group(f) not in HELD_OUT]))
        keep = max(rarest, round(len(training) * (rarest / len(training)) ** (rank / (len(classes) - 1))))
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for path in held + training[:keep]:
            link = folder / Path(path).name
            if not link.exists():
                os.symlink(Path(path).resolve(), link)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--out", default="runs/imbalance")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rarest", type=int, default=2, help="training images of the rarest character")
    args = parser.parse_args()
    out = Path(args.out)
    data = imbalanced_copy(Path(args.data), out / "data", args.rarest)
    base = dict(backbone="efficientnet_lite0", epochs=args.epochs, split="group", val_groups=HELD_OUT)
    rows, first = [], None
    for balance in ("none", "sampler"):
        run = out / f"balance-{balance}"
        config = Config.from_dict({**base, "balance": balance})
        if not (run / "best.pt").is_file():
            train(config, data, run, progress=False, split_file=first.split if first else None)
        finished = finish_run(run, progress=False)
        first = first or finished.run
        rows.append((balance, finished.evaluation))
    split_targets = [s.label for s in scan_dataset(data, progress=False).samples
                     if source_group(s.path) not in HELD_OUT]
    print(f"\nimbalanced stand-in: {len(split_targets)} training images, largest/smallest class "
          f"{imbalance_ratio(split_targets):.1f}x; {rows[0][1].num_images} validation images (unchanged)\n")
    print("| sampling | macro-F1 | balanced accuracy | top-1 |\n|---|---|---|---|")
    for balance, result in rows:
        print(f"| {balance} | {result.macro_f1:.3f} | {100 * result.balanced_accuracy:.1f} % | "
              f"{100 * result.top1:.1f} % |")


if __name__ == "__main__":
    main()

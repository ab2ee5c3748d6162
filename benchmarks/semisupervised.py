"""Few labels and many unlabelled images: how much of the gap to a fully labelled run does FixMatch close?

    python benchmarks/semisupervised.py --data data/standin --out runs/semisup [--labels 2 4] [--epochs 8]
        [--unknown-share 0.3] [--set split=random]

The demo's recipe (``configs/demo.yaml``: EfficientNet-Lite0, the group split holding out the Dream World and
Gen-7 box drawings) trains a fully labelled run first; its split is then reused file by file. For each number k of
labels per character, k training images of each character (seeded) keep their label and the rest of the training
images go, without labels and under neutral names, into an unlabelled folder. Two runs on exactly the same
validation images and the same epochs: labelled-only (the k images a character) and semi-supervised (the same,
``--unlabeled`` the rest). Printed: each run's best validation top-1 (what ``best.pt`` holds, the probe head's
when fine-tuning never beat it), its last row's (what training ends with), its time, the share
of the unlabelled draws pseudo-labelled in the last epoch, and the gap closed,
``(semi - labelled-only) / (full - labelled-only)``. Runs are cached in ``--out``: a finished one is read back.

``--set split=random`` draws the validation images from the same drawing styles as the labelled and unlabelled
ones, the usual semi-supervised protocol (FixMatch, USB); with the demo's group split they are styles that no
training image, labelled or not, shows, which unlabelled images of the training styles cannot teach.

``--unknown-share 0.3`` adds the open-world protocol: ``--unknown-characters`` characters (seeded, the run's
``holdout_classes``) are left out of the label set, and their images make that share of the unlabelled folder. The
labelled-only and semi-supervised runs then know only the other characters and are validated on them: unknown
characters in the folder must not make semi-supervised training worse than ignoring the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData, prepare_run_data, read_heldout
from simpsons_classifier.data.scan import Sample
from simpsons_classifier.data.split import Split, source_group
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import train
from simpsons_classifier.training.curves import read_metrics, unlabeled_epochs

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def run_once(config: Config, data: Path, out: Path, split_file: Path | None = None) -> tuple[float, float, float]:
    """(best validation top-1, the last row's top-1, seconds) of the run in ``out``, trained now unless it finished
    before. The best may be the probe head scored before fine-tuning; the last is what training ends with."""
    timing = out / "seconds.json"
    if not (out / "best.pt").is_file() or not timing.is_file():
        started = time.perf_counter()
        train(config, data, out, split_file=split_file)
        timing.write_text(json.dumps(time.perf_counter() - started))
    rows = read_metrics(RunDir(out).metrics)
    return max(r["val_top1"] for r in rows), rows[-1]["val_top1"], json.loads(timing.read_text())


def few_labels(full_run: Path, labels: int, out: Path, seed: int, unknown_share: float = 0.0) -> tuple[Path, Path]:
    """(a split file keeping ``labels`` training images a character and the full run's validation images, a folder
    of links to the other training images named ``SOURCE__NNNNN.png``, no label in sight: the drawing source kept
    where the file's name has one, as frames from ``simpsons data frames`` keep their episode). With
    ``unknown_share``, images of the full run's held-out characters, drawn with ``seed``, make that share of the
    folder: copies of them, as new episodes bring other files of those characters; the runs hold the same
    characters out, and ``train --unlabeled`` leaves a run's own held-out files out of the folder (they score the
    run), links to them too."""
    data = RunData.read(full_run)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in data.split.train:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    kept, rest, unknown = [], [], []
    for label in sorted(by_class):
        images = sorted(by_class[label], key=lambda s: s.path)
        rng.shuffle(images)
        kept += images[:labels]
        rest += images[labels:]
    if unknown_share:
        heldout = sorted(read_heldout(full_run), key=lambda s: s.path)
        wanted = round(len(rest) * unknown_share / (1 - unknown_share))
        if wanted > len(heldout):
            raise SystemExit(f"--unknown-share {unknown_share} needs {wanted} images of unknown characters; the "
                             f"held-out characters have {len(heldout)}: raise --unknown-characters")
        unknown = rng.sample(heldout, wanted)
    rest += unknown
    split_dir, unlabeled = out / "split", out / "unlabeled"
    split_dir.mkdir(parents=True, exist_ok=True)
    unlabeled.mkdir(exist_ok=True)
    Split(kept, data.split.val).write(RunDir(split_dir).split, data.root)
    summary = json.loads(RunDir(full_run).dataset.read_text())
    RunDir(split_dir).dataset.write_text(json.dumps(summary))
    rng.shuffle(rest)
    for number, sample in enumerate(rest):
        source = f"{source_group(sample.path)}__" if "__" in Path(sample.path).name else ""
        link = unlabeled / f"{source}{number:05d}{Path(sample.path).suffix}"
        if link.exists():
            continue
        if sample in unknown:  # a copy: train --unlabeled leaves out the very files the run holds out
            shutil.copyfile(sample.path, link)
        else:
            os.symlink(os.path.abspath(sample.path), link)
    return RunDir(split_dir).split, unlabeled


def labelled_vs_semi(config: Config, data: Path, where: Path, split_file: Path, unlabeled: Path) -> list[tuple]:
    """The rows (name, best top-1, last top-1, seconds, unlabelled draws) of the labelled-only and semi-supervised
    runs in ``where``."""
    only = run_once(config, data, where / "labelled-only", split_file)
    semi_config = Config.from_dict({"unlabeled_dir": str(unlabeled.resolve())}, base=config)
    semi = run_once(semi_config, data, where / "semi", split_file)
    last = unlabeled_epochs(read_metrics(RunDir(where / "semi").metrics), config.epochs)[-1]
    share = (f"{100 * last.share(last.used):.0f}% used, {100 * last.share(last.rejected):.0f}% unknown, "
             f"{100 * last.share(last.pending):.0f}% pending")
    return [("labelled-only", *only, ""), ("semi-supervised", *semi, share)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/standin"))
    parser.add_argument("--out", type=Path, default=Path("runs/semisup"))
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 4], help="labelled images per character")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run (default: the demo's)")
    parser.add_argument("--unknown-share", type=float, default=0.0,
                        help="also run with this share of the unlabelled folder from unknown characters (e.g. 0.3)")
    parser.add_argument("--unknown-characters", type=int, default=10, help="characters left out of the label set")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides, all runs")
    args = parser.parse_args()

    overrides = [*args.set, *([f"epochs={args.epochs}"] if args.epochs else [])]
    config = Config.load(DEMO_CONFIG, overrides)
    full = run_once(config, args.data, args.out / "full")
    full_top1 = full[0]
    rows = [("fully labelled", *full, "")]
    gaps = []
    for labels in args.labels:
        where = args.out / f"labels{labels}"
        split_file, unlabeled = few_labels(args.out / "full", labels, where, config.seed)
        (_, only_top1, *only), (_, semi_top1, *semi) = labelled_vs_semi(config, args.data, where, split_file, unlabeled)
        gap = (semi_top1 - only_top1) / (full_top1 - only_top1) if full_top1 > only_top1 else float("nan")
        gaps.append((labels, gap))
        rows += [(f"labelled-only, {labels} a character", only_top1, *only),
                 (f"semi-supervised, {labels} a character", semi_top1, *semi)]
    if args.unknown_share:
        # Only the split of the known characters is needed, not a trained run: the data side is written alone.
        open_config = Config.from_dict({"holdout_classes": args.unknown_characters}, base=config)
        known = args.out / f"unknown{args.unknown_characters}"
        if not RunDir(known / "split").split.is_file():
            (known / "split").mkdir(parents=True, exist_ok=True)
            prepare_run_data(open_config, args.data, known / "split", progress=False)
        for labels in args.labels:
            where = known / f"labels{labels}"
            split_file, unlabeled = few_labels(known / "split", labels, where, config.seed, args.unknown_share)
            for name, *row in labelled_vs_semi(open_config, args.data, where, split_file, unlabeled):
                rows.append((f"{name}, {labels} a known character, {100 * args.unknown_share:.0f}% unknown", *row))

    validation = config.val_groups if config.split == "group" and config.val_groups else f"{config.split} split"
    print(f"\n{config.backbone}, {config.epochs} epochs, validation: {validation}")
    print(f"{'run':<52} {'best':>7} {'last':>7} {'time':>7}  unlabelled draws (last epoch)")
    for name, best, last, seconds, share in rows:
        print(f"{name:<52} {100 * best:>6.1f}% {100 * last:>6.1f}% {seconds:>6.0f}s  {share}")
    for labels, gap in gaps:
        print(f"gap closed with {labels} labels a character: {100 * gap:.0f}% (target >= 50%)")


if __name__ == "__main__":
    main()

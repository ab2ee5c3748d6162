"""Adding characters without going back to ImageNet: a run on the stand-in's first 40 characters, then a run on
all 50 started from it (``simpsons train --init``), scored on the same validation images.

    python benchmarks/grow.py --data data/standin --out runs/grow [--epochs 8] [--grow-epochs 8] [--known 40]
        [--discovered [--every-image]] [--set KEY=VALUE ...]

Both runs use the demo's recipe (``configs/demo.yaml``: EfficientNet-Lite0, the group split holding out the Dream
World and Gen-7 box drawings), so the split is the same file by file: the old characters' validation images are
the same in both runs. Printed: top-1 on the old characters' images before (the 40-class run) and after (the
50-class run, all 50 classes competing), top-1 on the new characters' images, both also for the grown head before
any fine-tuning (the new run's epoch 0), each run's time, and the new run's validation top-1 epoch by epoch
(``best.pt`` is the best of them, the grown head included).

With ``--discovered`` the second run grows to what ``simpsons discover`` finds instead of to the other characters'
folders: the first run holds the other characters out (``holdout_classes``, drawn at random) and its
unknown-character rule is calibrated on half of them (``simpsons evaluate``); the other characters' training images
are given to ``discover`` as one unlabelled folder named by drawing source alone, and each new cluster's folder
becomes a class beside the first run's characters, as a user would rename it (the images it places with known
characters are left out). A new character's validation image then counts as right when it is predicted as a
cluster whose most common character is its own. ``--every-image`` gives ``discover`` the same option: every image
is clustered beside the known characters, not only those the rule rejects. Two last rows: the first run grown to
the same characters' true folders instead, with the same settings (what discovering them rather than labelling
them costs), and a run on all the characters' true folders trained from ImageNet as the first run was (what
sharing the head with the new characters costs the old ones, however they are added). A split that draws its
validation images anew when characters are added (``val_groups=[]``, ``split=random``) cannot be compared so,
and is refused there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.data.scan import Sample, scan_dataset
from simpsons_classifier.data.split import Split, make_split, source_group
from simpsons_classifier.discovery.run import discover
from simpsons_classifier.evaluation.evaluate import evaluate_run
from simpsons_classifier.evaluation.run_model import eval_transform, sample_outputs
from simpsons_classifier.models import create_model
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import LoadedModel, load_model, train
from simpsons_classifier.training.curves import best_checkpoint_name, read_metrics
from simpsons_classifier.training.grow import HeadPlan, grow_from_run
from simpsons_classifier.training.probe import probe_images

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def linked_classes(data: Path, out: Path, labels: list[str]) -> Path:
    """Symbolic links to the class folders ``labels`` of ``data``."""
    out.mkdir(parents=True, exist_ok=True)
    for label in labels:
        link = out / label
        if not link.exists():
            os.symlink((data / label).resolve(), link)
    return out


def key(sample: Sample) -> tuple[str, str]:
    """An image named by its class and file name, the same under the 40-class links and the full dataset."""
    return sample.label, Path(sample.path).name


def top1(loaded: LoadedModel, samples: list[Sample], character_of: dict[str, str] | None = None) -> float:
    """Share of ``samples`` whose predicted class is their character; ``character_of``: the character each of the
    model's classes stands for (a discovered cluster's most common one), where they are not the classes' names."""
    logits = sample_outputs(loaded, samples, progress=False).logits
    predicted = [loaded.classes[i] for i in logits.argmax(dim=1).tolist()]
    return float(np.mean([(character_of or {}).get(p, p) == s.label for p, s in zip(predicted, samples)]))


def variant(name: str, every_image: bool) -> str:
    """The folder of a ``--discovered`` step, told apart with ``--every-image`` so both flows can be compared."""
    return f"{name}-every-image" if every_image else name


def discovered_dataset(before_run: Path, data: Path, out: Path, known: list[str], new_characters: Split,
                       every_image: bool) -> tuple[Path, dict[str, str]]:
    """The first run's characters beside the new clusters ``simpsons discover`` finds among the other characters'
    training images, given as one unlabelled folder named by drawing source alone (``SOURCE__NNNN.png``, as
    ``simpsons data frames`` names frames), each new cluster's folder a class as a user would rename it; and the
    character each cluster stands for (its most common one)."""
    evaluate_run(before_run, progress=False)  # calibrates the unknown-character rule on the held-out characters
    unlabelled, character_of_file = out / "unlabelled", {}
    unlabelled.mkdir(parents=True, exist_ok=True)
    for index, sample in enumerate(new_characters.train):
        link = unlabelled / f"{source_group(sample.path)}__{index:04d}{Path(sample.path).suffix}"
        if not link.is_symlink():
            os.symlink(Path(sample.path).resolve(), link)
        character_of_file[link.name] = sample.label
    found = discover(before_run, unlabelled, out / variant("discover", every_image), progress=False,
                     every_image=every_image)
    print(f"discover: {found.summary()}; the rule rejects {found.rejected}; {len(found.new_clusters)} new clusters of "
          f"{len({s.label for s in new_characters.train})} characters, "
          f"{sum(c.size for c in found.new_clusters)} of {len(new_characters.train)} images in them")
    dataset = out / variant("data-discovered", every_image)
    shutil.rmtree(dataset, ignore_errors=True)
    linked_classes(data, dataset, known)
    character_of = {}
    for cluster in found.new_clusters:
        os.symlink(found.out.cluster(cluster.name).resolve(), dataset / cluster.name)
        characters = Counter(character_of_file[Path(path).name] for path in cluster.paths)
        character_of[cluster.name] = characters.most_common(1)[0][0]
    return dataset, character_of


def grown_head(source_run: Path, run: Path) -> LoadedModel:
    """The model the ``--init`` run started from (its epoch 0): the source's, its head grown to ``run``'s classes."""
    source, data = load_model(source_run), RunData.read(run)
    plan = HeadPlan(tuple(source.classes), tuple(data.classes))
    model = create_model(source.config.backbone, len(data.classes)).eval()
    loaded = LoadedModel(model, data.classes, source.config, source.mean, source.std)
    images = probe_images(data.split.train, data.classes, eval_transform(loaded))
    grow_from_run(model, source, plan, DataLoader(images, batch_size=64), torch.device("cpu"), progress=False)
    return loaded


def old_images_after(old_val: list[Sample], run: Path) -> list[Sample]:
    """The first run's validation images as ``run`` holds them; refuses runs whose splits differ."""
    old_keys = {key(s) for s in old_val}
    old_after = [s for s in RunData.read(run).split.val if key(s) in old_keys]
    if len(old_after) != len(old_val):
        raise SystemExit(f"the runs' splits differ: {len(old_val)} old-class validation images before, "
                         f"{len(old_after)} of them in {run}")
    return old_after


def timed_train(config: Config, data: Path, run: Path) -> str:
    """Train ``run`` unless it is already there (a rerun only scores); returns the time it took."""
    if (run / "best.pt").is_file():
        return "trained before"
    started = time.perf_counter()
    train(config, data, run, progress=False)
    return f"{time.perf_counter() - started:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/standin"))
    parser.add_argument("--out", type=Path, default=Path("runs/grow"))
    parser.add_argument("--known", type=int, default=40, help="characters of the first run")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the first run")
    parser.add_argument("--grow-epochs", type=int, default=8, help="epochs of the run started from it")
    parser.add_argument("--discovered", action="store_true",
                        help="grow to the new clusters `simpsons discover` finds among the other characters' "
                             "training images, not to those characters' folders")
    parser.add_argument("--every-image", action="store_true",
                        help="with --discovered: `discover --every-image`, every image clustered beside the known "
                             "characters, not only those the unknown-character rule rejects")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides of both runs, e.g. 'val_groups=[]' to hold out each character's own "
                             "drawing sources rather than the same two for all")
    args = parser.parse_args()
    if args.every_image and not args.discovered:
        parser.error("--every-image is an option of --discovered")
    scan = scan_dataset(args.data, progress=False)
    config = Config.load(DEMO_CONFIG, [f"epochs={args.epochs}", *args.overrides])
    if args.discovered:  # the other characters held out, as a run whose unknown-character rule is calibrated is
        before_run = args.out / f"known{args.known}-heldout"
        after_run = args.out / variant("grown-discovered", args.every_image)
        heldout = Config.load(DEMO_CONFIG, [f"epochs={args.epochs}", *args.overrides,
                                            f"holdout_classes={len(scan.classes) - args.known}"])
        before_time = timed_train(heldout, args.data, before_run)
    else:
        before_run, after_run = args.out / f"known{args.known}", args.out / "all"
        before_time = timed_train(config, linked_classes(scan.root, args.out / f"data{args.known}",
                                                         scan.classes[:args.known]), before_run)
    before = load_model(before_run)
    # the other characters' images, split as a run on all of --data splits them
    new_characters = make_split([s for s in scan.samples if s.label not in before.classes],
                                config.split, config.val_fraction, config.seed, config.val_groups)
    grown_data, character_of = args.data, None
    if args.discovered:
        grown_data, character_of = discovered_dataset(before_run, scan.root, args.out, before.classes, new_characters,
                                                      args.every_image)
    after_config = Config.load(DEMO_CONFIG, [f"epochs={args.grow_epochs}", f"init_run={before_run.resolve()}",
                                             *args.overrides])
    after_time = timed_train(after_config, grown_data, after_run)
    if args.discovered:  # the same characters grown from their true folders (what discovering them costs), and
        # all of them trained from ImageNet (what 50 characters cost the old ones, however they are added)
        true_run, scratch_run = args.out / "grown-true-folders", args.out / "all-from-imagenet"
        true_time = timed_train(after_config, scan.root, true_run)
        scratch_time = timed_train(config, scan.root, scratch_run)

    after, start = load_model(after_run), grown_head(before_run, after_run)
    old_val = RunData.read(before_run).split.val
    old_after = old_images_after(old_val, after_run)
    new = new_characters.val

    print(f"\n{len(before.classes)} characters, then {len(after.classes)} started from them "
          f"({args.epochs} + {args.grow_epochs} epochs); validation: {len(old_val)} images of old characters, "
          f"{len(new)} of new ones\n")
    print("| model | old characters top-1 | new characters top-1 | training time |\n|---|---|---|---|")
    print(f"| first run ({len(before.classes)} classes) | {100 * top1(before, old_val):.1f} % | | "
          f"{before_time} |")
    print(f"| grown head, before fine-tuning (epoch 0) | {100 * top1(start, old_after):.1f} % | "
          f"{100 * top1(start, new, character_of):.1f} % | |")
    print(f"| after `--init`, {args.grow_epochs} epochs ({len(after.classes)} classes) | "
          f"{100 * top1(after, old_after):.1f} % | {100 * top1(after, new, character_of):.1f} % | {after_time} |")
    if args.discovered:
        for label, run, time_taken in (("the same, grown from the new characters' true folders", true_run, true_time),
                                       (f"all trained from ImageNet on the true folders, {args.epochs} epochs",
                                        scratch_run, scratch_time)):
            model = load_model(run)
            print(f"| {label} ({len(model.classes)} classes) | "
                  f"{100 * top1(model, old_images_after(old_val, run)):.1f} % | {100 * top1(model, new):.1f} % | "
                  f"{time_taken} |")

    rows = read_metrics(RunDir(after_run).metrics)
    by_epoch = ", ".join(f"{100 * row['val_top1']:.1f}" for row in rows)
    print(f"\nthe --init run's validation top-1 (all characters) from epoch 0: {by_epoch} %; best.pt holds "
          f"{best_checkpoint_name(rows, args.grow_epochs)}")


if __name__ == "__main__":
    main()

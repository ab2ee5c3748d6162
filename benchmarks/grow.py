"""Adding characters without going back to ImageNet: a run on the stand-in's first 40 characters, then a run on
all 50 started from it (``simpsons train --init``), scored on the same validation images.

    python benchmarks/grow.py --data data/standin --out runs/grow [--epochs 8] [--grow-epochs 8] [--known 40]

Both runs use the demo's recipe (``configs/demo.yaml``: EfficientNet-Lite0, the group split holding out the Dream
World and Gen-7 box drawings), so the split is the same file by file: the old characters' validation images are
the same in both runs. Printed: top-1 on the old characters' images before (the 40-class run) and after (the
50-class run, all 50 classes competing), top-1 on the new characters' images, both also for the grown head before
any fine-tuning (the new run's epoch 0), each run's time, and the new run's validation top-1 epoch by epoch
(``best.pt`` is the best of them, the grown head included).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.data.scan import Sample, scan_dataset
from simpsons_classifier.evaluation.run_model import eval_transform, sample_logits
from simpsons_classifier.models import create_model
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import LoadedModel, load_model, train
from simpsons_classifier.training.curves import best_checkpoint_name, read_metrics
from simpsons_classifier.training.grow import HeadPlan, grow_from_run
from simpsons_classifier.training.probe import probe_images

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def first_classes(data: Path, out: Path, count: int) -> Path:
    """Symbolic links to the first ``count`` class folders of ``data`` (in the order the scan sorts them)."""
    out.mkdir(parents=True, exist_ok=True)
    scan = scan_dataset(data, progress=False)
    for label in scan.classes[:count]:
        link = out / label
        if not link.exists():
            os.symlink((scan.root / label).resolve(), link)
    return out


def key(sample: Sample) -> tuple[str, str]:
    """An image named by its class and file name, the same under the 40-class links and the full dataset."""
    return sample.label, Path(sample.path).name


def top1(loaded: LoadedModel, samples: list[Sample]) -> float:
    logits, targets = sample_logits(loaded, samples, progress=False)
    return (logits.argmax(dim=1) == targets).float().mean().item()


def grown_head(source_run: Path, run: Path) -> LoadedModel:
    """The model the ``--init`` run started from (its epoch 0): the source's, its head grown to ``run``'s classes."""
    source, data = load_model(source_run), RunData.read(run)
    plan = HeadPlan(tuple(source.classes), tuple(data.classes))
    model = create_model(source.config.backbone, len(data.classes)).eval()
    loaded = LoadedModel(model, data.classes, source.config, source.mean, source.std)
    images = probe_images(data.split.train, data.classes, eval_transform(loaded))
    grow_from_run(model, source, plan, DataLoader(images, batch_size=64), torch.device("cpu"), progress=False)
    return loaded


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
    args = parser.parse_args()
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    before_run, after_run = args.out / f"known{args.known}", args.out / "all"

    before_time = timed_train(Config.from_dict({**demo, "epochs": args.epochs}),
                                 first_classes(args.data, args.out / f"data{args.known}", args.known), before_run)
    after_config = Config.from_dict({**demo, "epochs": args.grow_epochs, "init_run": str(before_run.resolve())})
    after_time = timed_train(after_config, args.data, after_run)

    before, after, start = load_model(before_run), load_model(after_run), grown_head(before_run, after_run)
    old_val = RunData.read(before_run).split.val
    val = RunData.read(after_run).split.val
    old_keys = {key(s) for s in old_val}
    old_after = [s for s in val if key(s) in old_keys]
    new = [s for s in val if s.label not in before.classes]
    if len(old_after) != len(old_val):
        raise SystemExit(f"the runs' splits differ: {len(old_val)} old-class validation images before, "
                         f"{len(old_after)} of them after")

    print(f"\n{len(before.classes)} characters, then {len(after.classes)} started from them "
          f"({args.epochs} + {args.grow_epochs} epochs); validation: {len(old_val)} images of old characters, "
          f"{len(new)} of new ones\n")
    print("| model | old characters top-1 | new characters top-1 | training time |\n|---|---|---|---|")
    print(f"| first run ({len(before.classes)} classes) | {100 * top1(before, old_val):.1f} % | | "
          f"{before_time} |")
    print(f"| grown head, before fine-tuning (epoch 0) | {100 * top1(start, old_after):.1f} % | "
          f"{100 * top1(start, new):.1f} % | |")
    print(f"| after `--init`, {args.grow_epochs} epochs ({len(after.classes)} classes) | "
          f"{100 * top1(after, old_after):.1f} % | {100 * top1(after, new):.1f} % | {after_time} |")

    rows = read_metrics(RunDir(after_run).metrics)
    by_epoch = ", ".join(f"{100 * row['val_top1']:.1f}" for row in rows)
    print(f"\nthe --init run's validation top-1 (all characters) from epoch 0: {by_epoch} %; best.pt holds "
          f"{best_checkpoint_name(rows, args.grow_epochs)}")


if __name__ == "__main__":
    main()

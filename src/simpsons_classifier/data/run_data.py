"""The data side of a run folder: what was found, what was skipped, and the split, written once and then
read back by every process, by resume and by evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from .scan import scan_dataset
from .split import Split, make_split

SPLIT_FILE = "split.csv"
SKIPPED_FILE = "skipped.csv"
DATASET_FILE = "dataset.json"


@dataclass
class RunData:
    classes: list[str]
    split: Split
    summary: dict

    @classmethod
    def read(cls, run_dir: str | Path) -> RunData:
        run_dir = Path(run_dir)
        summary = json.loads((run_dir / DATASET_FILE).read_text())
        return cls(summary["classes"], Split.read(run_dir / SPLIT_FILE), summary)


def prepare_run_data(config: Config, data_dir: str | Path, run_dir: str | Path, progress: bool = True) -> RunData:
    """Scan ``data_dir``, split it as ``config`` says, and write split.csv, skipped.csv and dataset.json."""
    run_dir = Path(run_dir)
    scan = scan_dataset(data_dir, min_images_per_class=config.min_images_per_class, progress=progress)
    split = make_split(scan.samples, config.split, config.val_fraction, config.seed, config.val_groups)
    split.write(run_dir / SPLIT_FILE)
    scan.write_skipped(run_dir / SKIPPED_FILE)
    summary = {
        "data_dir": str(Path(data_dir).resolve()),
        "root": str(scan.root.resolve()),
        "classes": scan.classes,
        "class_counts": scan.class_counts(),
        "num_images": len(scan.samples),
        "num_skipped": len(scan.skipped),
        "dropped_classes": scan.dropped_classes,
        "split": config.split,
        "val_groups": config.val_groups,
        "train_images": len(split.train),
        "val_images": len(split.val),
    }
    (run_dir / DATASET_FILE).write_text(json.dumps(summary, indent=2))
    return RunData(scan.classes, split, summary)

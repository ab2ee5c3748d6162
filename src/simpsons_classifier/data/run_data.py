"""The data side of a run folder: what was found, what was skipped, and the split, written once and then
read back by every process, by resume and by evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..run_dir import RunDir
from .scan import DatasetError, Sample, scan_dataset
from .split import Split, make_split, read_samples, write_samples


@dataclass
class RunData:
    classes: list[str]
    split: Split
    summary: dict

    @property
    def class_counts(self) -> dict[str, int]:
        """Images per class in the dataset (training and validation together)."""
        return self.summary["class_counts"]

    @classmethod
    def read(cls, run_dir: str | Path | RunDir) -> RunData:
        run = RunDir(run_dir)
        summary = json.loads(run.dataset.read_text())
        return cls(summary["classes"], Split.read(run.split), summary)


def prepare_run_data(
    config: Config, data_dir: str | Path, run_dir: str | Path | RunDir, progress: bool = True,
    split_file: str | Path | None = None,
) -> RunData:
    """Scan ``data_dir``, split it as ``config`` says, and write split.csv, skipped.csv and dataset.json (and
    heldout.csv with ``holdout_classes``)."""
    run = RunDir(run_dir)
    scan = scan_dataset(data_dir, min_images_per_class=config.min_images_per_class, progress=progress)
    heldout_classes = pick_heldout_classes(scan.classes, config.holdout_classes, config.seed)
    heldout = [s for s in scan.samples if s.label in heldout_classes]
    scan.samples = [s for s in scan.samples if s.label not in heldout_classes]
    if heldout:
        write_samples(run.heldout, {"heldout": heldout})
    # An ablation compares recipes on exactly the same images: its later runs reuse the first run's split.
    split = Split.read(split_file) if split_file else make_split(
        scan.samples, config.split, config.val_fraction, config.seed, config.val_groups)
    split.write(run.split)
    scan.write_skipped(run.skipped)
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
        "heldout_classes": heldout_classes,
        "heldout_images": len(heldout),
    }
    run.dataset.write_text(json.dumps(summary, indent=2))
    return RunData(scan.classes, split, summary)


def pick_heldout_classes(classes: list[str], count: int, seed: int) -> list[str]:
    """``count`` classes drawn with ``seed``, sorted; at least two classes must stay known."""
    if count and count > len(classes) - 2:
        raise DatasetError(f"holdout_classes={count} leaves fewer than 2 of the {len(classes)} classes to train on")
    return sorted(np.random.default_rng(seed).choice(classes, size=count, replace=False).tolist())


def read_heldout(run_dir: str | Path | RunDir) -> list[Sample]:
    """The held-out classes' images of a run; empty when it kept none out."""
    path = RunDir(run_dir).heldout
    return read_samples(path).get("heldout", []) if path.is_file() else []

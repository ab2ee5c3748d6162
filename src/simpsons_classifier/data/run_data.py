"""The data side of a run folder: what was found, what was skipped, and the split, written once and then
read back by every process, by resume and by evaluate.

``split.csv`` and ``heldout.csv`` name each image relative to the dataset folder, whose absolute path
``dataset.json`` keeps (``root``): a run reads from any working directory, and after being moved or copied. When
the dataset itself moved, :func:`repoint_data` records its new place (``--data-root NEWROOT``). Runs written
before the paths were relative (absolute paths, or paths relative to the folder training was started from) still
read: their paths are taken relative to the folder all of them share, which is the dataset folder they were
scanned from (each image lies in a class folder below it), and joined to the recorded root.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import Config
from ..run_dir import RunDir
from ..storage import write_json_atomic
from .scan import DatasetError, Sample, ScanResult, Skipped, scan_dataset, scan_unlabeled, write_skipped
from .split import Split, make_split, read_samples, write_samples

UNLABELED_SUBSET = "unlabeled"
"""The subset of ``unlabeled.csv``'s rows."""
RELATIVE_PATHS = "relative to root"
"""``dataset.json``'s ``sample_paths`` when split.csv and heldout.csv name files relative to ``root``."""


@dataclass
class RunData:
    classes: list[str]
    split: Split
    summary: dict

    @property
    def class_counts(self) -> dict[str, int]:
        """Images per class in the dataset (training and validation together)."""
        return self.summary["class_counts"]

    @property
    def root(self) -> Path:
        """The dataset folder the run's images are read from."""
        return Path(self.summary["root"])

    @classmethod
    def read(cls, run_dir: str | Path | RunDir, root: str | Path | None = None) -> RunData:
        """The run's data, its images under the recorded dataset folder or under ``root`` when given."""
        run = RunDir(run_dir)
        if not run.dataset.is_file():
            raise FileNotFoundError(f"{run.dataset} does not exist: is {run} a run folder?")
        summary = json.loads(run.dataset.read_text())
        return cls(summary["classes"], Split.from_subsets(_read_samples(run, run.split, summary, root)), summary)

    def check_root(self) -> None:
        """Refuse, naming the option that fixes it, a run whose dataset folder is not there any more."""
        if not self.root.is_dir():
            raise DatasetError(
                f"the run's dataset folder {self.root} is not there any more; if it moved, give its new place with "
                "--data-root NEWROOT (simpsons train --resume RUN --data-root NEWROOT, or simpsons evaluate --run "
                "RUN --data-root NEWROOT)")


def _read_samples(run: RunDir, path: Path, summary: dict, root: str | Path | None = None) -> dict[str, list[Sample]]:
    root = Path(root if root is not None else summary["root"])
    if summary.get("sample_paths") == RELATIVE_PATHS:
        return read_samples(path, root)
    base = _stored_root(run)
    if base is None:
        return read_samples(path)
    return {subset: [Sample(str(root / os.path.relpath(s.path, base)), s.label) for s in samples]
            for subset, samples in read_samples(path).items()}


def _stored_root(run: RunDir) -> str | None:
    """The dataset folder as an older run's files name it: the folder that all its images share (with two classes
    or more, the class folders part there). None for a single class: its paths are read as they are."""
    stored = [s for path in (run.split, run.heldout) if path.is_file()
              for samples in read_samples(path).values() for s in samples]
    if len({s.label for s in stored}) < 2:
        return None
    return os.path.commonpath([s.path for s in stored]) or "."


@dataclass(frozen=True)
class Repointed:
    """What :func:`repoint_data` recorded, and how many of the run's images the new folder lacks."""

    previous: str
    root: Path
    images: int
    missing: int
    folder: str = "dataset"
    """Which of the run's folders moved: its dataset or its unlabelled folder."""

    def __str__(self) -> str:
        missing = (f", {self.missing} of them missing: another image takes the place of each, with a warning"
                   if self.missing else "")
        return f"{self.folder} moved: {self.previous} -> {self.root} ({self.images} images{missing})"


def repoint_data(run_dir: str | Path | RunDir, new_root: str | Path) -> Repointed:
    """Record in ``dataset.json`` that the run's dataset now lies in ``new_root`` (it moved, or the run was
    copied to another machine), once the run's images are found there. An older run's split.csv and heldout.csv
    are written again with relative paths."""
    run = RunDir(run_dir)
    root = Path(os.path.abspath(new_root))
    if not root.is_dir():
        raise DatasetError(f"--data-root {new_root}: not a folder")
    data = RunData.read(run, root)
    heldout = read_heldout(run, root)
    samples = data.split.train + data.split.val + heldout
    found = sum(Path(s.path).is_file() for s in samples)
    if samples and not found:
        raise DatasetError(f"--data-root {root} holds none of the run's {len(samples)} images (no {samples[0].path}): "
                           f"give the folder that holds its class folders ({', '.join(data.classes[:3])}, ...)")
    if data.summary.get("sample_paths") != RELATIVE_PATHS:
        data.split.write(run.split, root)
        if heldout:
            write_samples(run.heldout, {"heldout": heldout}, root)
    summary = {**data.summary, "root": str(root), "sample_paths": RELATIVE_PATHS}
    write_json_atomic(run.dataset, summary)
    return Repointed(data.summary["root"], root, len(samples), len(samples) - found)


def repoint_unlabeled(run_dir: str | Path | RunDir, new_root: str | Path) -> Repointed:
    """Record in ``dataset.json`` that a semi-supervised run's unlabelled folder now lies in ``new_root``, once
    its images are found there (they are named relative to the folder in ``unlabeled.csv``)."""
    run = RunDir(run_dir)
    if not run.unlabeled.is_file():
        raise DatasetError(f"--unlabeled {new_root}: {run} was trained without an unlabelled folder, and a resumed "
                           "run keeps its data; start a new run with --unlabeled to use one")
    root = Path(os.path.abspath(new_root))
    if not root.is_dir():
        raise DatasetError(f"--unlabeled {new_root}: not a folder")
    samples = read_samples(run.unlabeled, root).get(UNLABELED_SUBSET, [])
    found = sum(Path(s.path).is_file() for s in samples)
    if samples and not found:
        raise DatasetError(f"--unlabeled {root} holds none of the run's {len(samples)} unlabelled images (no "
                           f"{samples[0].path}): give the folder the run was started with, as it is now")
    summary = json.loads(run.dataset.read_text())
    write_json_atomic(run.dataset, {**summary, "unlabeled_root": str(root)})
    return Repointed(summary["unlabeled_root"], root, len(samples), len(samples) - found, "unlabelled folder")


def prepare_run_data(
    config: Config, data_dir: str | Path, run_dir: str | Path | RunDir, progress: bool = True,
    split_file: str | Path | None = None,
) -> RunData:
    """Scan ``data_dir``, split it as ``config`` says, and write split.csv, skipped.csv and dataset.json (and
    heldout.csv with ``holdout_classes``). ``split_file``: the split.csv of another run of the same data (with its
    dataset.json beside it), whose split is used instead of making one."""
    run = RunDir(run_dir)
    scan = scan_dataset(data_dir, min_images_per_class=config.min_images_per_class, progress=progress)
    if len(scan.classes) < 2:
        dropped = (f"; left out for having fewer than min_images_per_class={config.min_images_per_class} images: "
                   + ", ".join(f"{name} ({count})" for name, count in scan.dropped_classes.items())
                   if scan.dropped_classes else "")
        found = f"1 character ({scan.classes[0]})" if scan.classes else "no character"
        raise DatasetError(f"{scan.root} holds images of {found}{dropped}: a classifier needs at least 2, each a "
                           "folder of its images")
    heldout_classes = pick_heldout_classes(scan.classes, config.holdout_classes, config.seed)
    heldout = [s for s in scan.samples if s.label in heldout_classes]
    scan.samples = [s for s in scan.samples if s.label not in heldout_classes]
    if heldout:
        write_samples(run.heldout, {"heldout": heldout}, scan.root)
    # An ablation compares recipes on exactly the same images: its later runs reuse the first run's split.
    split = RunData.read(Path(split_file).parent).split if split_file else make_split(
        scan.samples, config.split, config.val_fraction, config.seed, config.val_groups)
    split.write(run.split, scan.root)
    scan.write_skipped(run.skipped)
    unlabeled = scan_unlabeled(config.unlabeled_dir, progress) if config.unlabeled_dir else None
    if unlabeled is not None:
        unlabeled = _without_scored_images(unlabeled, {"a validation image of this run": split.val,
                                                       "a held-out character's image of this run": heldout})
        write_samples(run.unlabeled, {UNLABELED_SUBSET: unlabeled.samples}, unlabeled.root)
        write_skipped(run.unlabeled_skipped, unlabeled.skipped)
    summary = {
        "data_dir": os.path.abspath(data_dir),
        "root": os.path.abspath(scan.root),
        "sample_paths": RELATIVE_PATHS,
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
        "unlabeled_root": os.path.abspath(unlabeled.root) if unlabeled else None,
        "unlabeled_images": len(unlabeled.samples) if unlabeled else 0,
        "unlabeled_skipped": len(unlabeled.skipped) if unlabeled else 0,
    }
    write_json_atomic(run.dataset, summary)
    return RunData(scan.classes, split, summary)


def _without_scored_images(unlabeled: ScanResult, scored: dict[str, list[Sample]]) -> ScanResult:
    """``unlabeled`` with the images the run is scored on moved to its skipped files, each with the reason that
    names its subset: an unlabelled folder that holds the dataset, or lies above it, would otherwise train on the
    validation images through their pseudo-labels."""
    reasons = {os.path.realpath(s.path): reason for reason, samples in scored.items() for s in samples}
    kept, left_out = [], []
    for sample in unlabeled.samples:
        reason = reasons.get(os.path.realpath(sample.path))
        if reason is None:
            kept.append(sample)
        else:
            left_out.append(Skipped(sample.path, reason))
    if not kept:
        raise DatasetError(f"every readable image in the unlabelled folder {unlabeled.root} is one this run is "
                           "validated or scored on: give a folder of other images")
    return replace(unlabeled, samples=kept, skipped=[*unlabeled.skipped, *left_out])


def pick_heldout_classes(classes: list[str], count: int, seed: int) -> list[str]:
    """``count`` classes drawn with ``seed``, sorted; at least two classes must stay known."""
    if count and count > len(classes) - 2:
        raise DatasetError(f"holdout_classes={count} leaves fewer than 2 of the {len(classes)} classes to train on")
    return sorted(np.random.default_rng(seed).choice(classes, size=count, replace=False).tolist())


def read_heldout(run_dir: str | Path | RunDir, root: str | Path | None = None) -> list[Sample]:
    """The held-out classes' images of a run (under ``root`` when given); empty when it kept none out."""
    run = RunDir(run_dir)
    if not run.heldout.is_file():
        return []
    summary = json.loads(run.dataset.read_text())
    return _read_samples(run, run.heldout, summary, root).get("heldout", [])


def read_unlabeled(run_dir: str | Path | RunDir) -> list[Sample]:
    """The unlabelled images of a semi-supervised run, as scanned when it started (a resumed run trains on the
    same ones); empty for a run without them. A folder that is not there any more is refused naming it."""
    run = RunDir(run_dir)
    if not run.unlabeled.is_file():
        return []
    root = Path(json.loads(run.dataset.read_text())["unlabeled_root"])
    if not root.is_dir():
        raise DatasetError(f"the run's unlabelled folder {root} is not there any more; if it moved, give its new "
                           f"place with simpsons train --resume {run} --unlabeled NEWDIR")
    return read_samples(run.unlabeled, root).get(UNLABELED_SUBSET, [])

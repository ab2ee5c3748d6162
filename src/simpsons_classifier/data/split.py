"""Train/validation splits, written to ``RUN/split.csv`` so that resume and evaluate see the same one.

``random`` is the reference: stratified by class, seeded. It flatters a model when a dataset holds
near-duplicates (consecutive frames of one scene, one sprite's animation frames): the twin of a validation
image is in training. ``group`` keeps every file of a group on one side and holds whole groups out. The group
of a file is its source, the part of its name before ``__`` with ``_shiny``/``_regular`` removed
(``bw_front_shiny__2.png`` -> ``bw_front``); files without ``__`` are each their own group.

The files name each image by its path relative to the dataset folder (``bart_simpson/pic_0001.jpg``), which the
run records in ``dataset.json``: a run folder works from any working directory, moved or copied, and a dataset
that moved is one new root to record (``--data-root``).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..storage import write_text_atomic
from .scan import DatasetError, Sample

_VARIANT_SUFFIXES = ("_shiny", "_regular")


@dataclass
class Split:
    train: list[Sample]
    val: list[Sample]

    def write(self, path: str | Path, root: str | Path) -> None:
        write_samples(path, {"train": self.train, "val": self.val}, root)

    @classmethod
    def read(cls, path: str | Path, root: str | Path | None = None) -> Split:
        return cls.from_subsets(read_samples(path, root))

    @classmethod
    def from_subsets(cls, subsets: dict[str, list[Sample]]) -> Split:
        return cls(train=subsets.get("train", []), val=subsets.get("val", []))


def write_samples(path: str | Path, subsets: dict[str, list[Sample]], root: str | Path) -> None:
    """One row per file: its path relative to ``root`` (with ``/``), label, subset, group."""
    base = os.path.abspath(root)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "label", "subset", "group"])
    for subset, samples in subsets.items():
        writer.writerows((_relative(s.path, base), s.label, subset, source_group(s.path)) for s in samples)
    write_text_atomic(path, text.getvalue())


def _relative(path: str, base: str) -> str:
    # Lexical, not resolved: a class folder that is a symbolic link stays one below the root.
    return Path(os.path.relpath(os.path.abspath(path), base)).as_posix()


def read_samples(path: str | Path, root: str | Path | None = None) -> dict[str, list[Sample]]:
    """The samples of each subset, their paths joined to ``root``; as written when ``root`` is None."""
    subsets: dict[str, list[Sample]] = defaultdict(list)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            where = str(Path(root) / row["path"]) if root is not None else row["path"]
            subsets[row["subset"]].append(Sample(where, row["label"]))
    return dict(subsets)


def source_group(path: str | Path) -> str:
    """The drawing source of a file: its name before ``__``, without the ``_shiny``/``_regular`` variant."""
    name = Path(path).name
    if "__" not in name:
        return Path(path).stem
    source = name.split("__", 1)[0]
    for suffix in _VARIANT_SUFFIXES:
        source = source.removesuffix(suffix)
    return source


def make_split(
    samples: list[Sample], kind: str, val_fraction: float, seed: int, val_groups: list[str] | None = None
) -> Split:
    if kind == "random":
        return _random_split(samples, val_fraction, seed)
    if kind == "group":
        if val_groups:
            return _held_out_groups(samples, set(val_groups))
        return _random_group_split(samples, val_fraction, seed)
    raise ValueError(f"unknown split kind {kind!r}")


def _random_split(samples: list[Sample], val_fraction: float, seed: int) -> Split:
    labels = [s.label for s in samples]
    try:
        train, val = train_test_split(samples, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as error:  # scikit-learn's: too few images on one side for every class to be there
        raise DatasetError(f"a stratified split of {len(samples)} images of {len(set(labels))} characters with "
                           f"val_fraction={val_fraction} cannot put every character on both sides ({error}): add "
                           "images, or set val_fraction so that both sides hold at least one image a character"
                           ) from error
    return Split(train=list(train), val=list(val))


def _held_out_groups(samples: list[Sample], val_groups: set[str]) -> Split:
    present = {source_group(s.path) for s in samples}
    missing = sorted(val_groups - present)
    if missing:
        how = ("a file's group is its name before `__`" if any("__" in Path(s.path).name for s in samples)
               else "no file name here has `__`, so a file's group is its whole name")
        raise DatasetError(
            f"val_groups {missing} match no file's source group ({how}; {len(present)} groups, e.g. "
            f"{sorted(present)[:8]}): name groups this data has, draw whole groups at random with `--set "
            "'val_groups=[]'`, or split at random with `--set split=random`")
    split = Split(train=[], val=[])
    for sample in samples:
        (split.val if source_group(sample.path) in val_groups else split.train).append(sample)
    if not split.train:
        raise DatasetError(f"val_groups {sorted(val_groups)} hold out every file: nothing is left to train on")
    return split


def _random_group_split(samples: list[Sample], val_fraction: float, seed: int) -> Split:
    """Per class, whole groups go to validation in a seeded random order until ``val_fraction`` is nearest."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        by_class[sample.label][source_group(sample.path)].append(sample)
    split = Split(train=[], val=[])
    for label in sorted(by_class):
        groups = by_class[label]
        names = sorted(groups)
        target = val_fraction * sum(len(g) for g in groups.values())
        held, held_count = set(), 0
        for name in rng.permutation(names):
            size = len(groups[name])
            closer = abs(held_count + size - target) < abs(held_count - target)
            if closer and len(held) + 1 < len(names):
                held.add(name)
                held_count += size
        for name in names:
            (split.val if name in held else split.train).extend(groups[name])
    return split

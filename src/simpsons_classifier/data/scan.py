"""Finding the labelled images of a dataset folder.

Two layouts are read: one folder per character (images anywhere below it), and a flat folder whose file names
carry the label (``bart_simpson_12.jpg``, the Kaggle test set). Files are judged by their content, not their
extension: every file is decoded once, and those that do not decode are skipped, counted and listed with the
reason, so a broken file never stops an epoch halfway. The Kaggle download's doubly nested
``simpsons_dataset/simpsons_dataset/`` is walked through, and so is the duplicate inner copy some versions of it
hold beside the class folders (``simpsons_dataset/{simpsons_dataset/, bart_simpson/, ...}``), which would
otherwise become one more class holding every image again.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..tables import write_rows
from .images import check_image
from .kaggle import recognise_download

_TRAILING_NUMBER = re.compile(r"[\s_\-]*\(?\d+\)?$")


class DatasetError(ValueError):
    """A dataset folder that cannot be used as given; the message names the folder and what to do."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: str


UNLABELED = ""
"""The label of an image of an unlabelled folder (semi-supervised training)."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class ScanResult:
    root: Path
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    dropped_classes: dict[str, int] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))

    def write_skipped(self, path: str | Path) -> None:
        write_skipped(path, self.skipped)


def write_skipped(path: str | Path, skipped: list[Skipped]) -> None:
    write_rows(path, ["path", "reason"], [(s.path, s.reason) for s in skipped])


def label_from_filename(path: str | Path) -> str:
    """``bart_simpson_12.jpg`` -> ``bart_simpson``: the stem without its trailing number."""
    return _TRAILING_NUMBER.sub("", Path(path).stem)


def resolve_root(root: str | Path) -> Path:
    """The folder of class folders in ``root``: nested copies are walked into (see ``_nested_copy``); a lone
    folder of images is a one-class dataset and is kept. The top of an unzipped Kaggle download is refused with
    the folders to use instead."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    while (inner := _nested_copy(root)) is not None:
        root = inner
    source = recognise_download(root)
    if source is not None:
        test_use = ("evaluate with --labels-from-filenames" if source.labelled_test
                    else "answer with simpsons predict --format kaggle")
        raise DatasetError(f"{root} holds {source.describe()} as unzipped, not one dataset: train on "
                           f"{root / source.train_folder}; its test set is {root / source.test_folder} ({test_use})")
    return root


def _nested_copy(folder: Path) -> Path | None:
    """The folder of folders to walk into from ``folder``: its only entry (``simpsons_dataset/simpsons_dataset``),
    or a sub-folder of the same name whose folders repeat every other folder beside it (a duplicate inner copy).
    A same-named folder of folders beside other classes is ambiguous and refused."""
    entries = _visible(folder)
    candidate = entries[0] if len(entries) == 1 else folder / folder.name
    if candidate not in entries or not candidate.is_dir():
        return None
    inner = _visible(candidate)
    if not all(e.is_dir() for e in inner):
        return None
    outside_only = {e.name for e in entries if e.is_dir() and e != candidate} - {e.name for e in inner}
    if outside_only:
        raise DatasetError(f"{folder} holds class folders and a folder {candidate.name}/ of other class folders "
                           f"({', '.join(sorted(outside_only)[:3])} only outside it): give one of the two as the "
                           "dataset folder")
    return candidate


def _visible(folder: Path) -> list[Path]:
    return [e for e in folder.iterdir() if not e.name.startswith(".")]


def scan_dataset(
    root: str | Path,
    labels_from_filenames: bool = False,
    min_images_per_class: int = 1,
    progress: bool = True,
) -> ScanResult:
    """Every decodable image under ``root`` with its label; undecodable files go to ``skipped``."""
    root = resolve_root(root)
    candidates = _labelled_files(root, labels_from_filenames)
    if not candidates:
        raise DatasetError(f"no files found under {root}")
    reasons = check_images([path for path, _ in candidates], progress)
    samples, skipped = [], []
    for (path, label), reason in zip(candidates, reasons):
        if reason is not None:
            skipped.append(Skipped(str(path), reason))
        elif not label:
            skipped.append(Skipped(str(path), "no label in the file name"))
        else:
            samples.append(Sample(str(path), label))
    result = ScanResult(root=root, samples=samples, skipped=skipped)
    if not samples:
        raise DatasetError(f"no readable image under {root} ({len(skipped)} files skipped)")
    return drop_small_classes(result, min_images_per_class)


def scan_unlabeled(folder: str | Path, progress: bool = True) -> ScanResult:
    """Every decodable image anywhere below ``folder``, labelled :data:`UNLABELED`; undecodable files go to
    ``skipped``. A missing folder, or one without a readable image, is refused naming it."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"unlabelled folder {folder} does not exist or is not a folder")
    candidates = [(path, UNLABELED) for path in files_below(root)]
    if not candidates:
        raise DatasetError(f"unlabelled folder {folder} holds no files")
    reasons = check_images([path for path, _ in candidates], progress)
    result = ScanResult(root=root, samples=[Sample(str(path), UNLABELED) for (path, _), reason
                                            in zip(candidates, reasons) if reason is None],
                        skipped=[Skipped(str(path), reason) for (path, _), reason in zip(candidates, reasons)
                                 if reason is not None])
    if not result.samples:
        raise DatasetError(f"no readable image in the unlabelled folder {folder} ({len(result.skipped)} files "
                           "skipped)")
    return result


def drop_small_classes(result: ScanResult, minimum: int) -> ScanResult:
    """Classes with fewer than ``minimum`` images are removed and recorded in ``dropped_classes``."""
    counts = result.class_counts()
    small = {label: n for label, n in counts.items() if n < minimum}
    if small:
        result.samples = [s for s in result.samples if s.label not in small]
        result.dropped_classes.update(small)
    return result


def class_names(root: str | Path) -> list[str]:
    """The class folders' names in the dataset folder ``root``, without opening an image: what a command can check
    before it scans (see ``resolve_root`` for the folders walked into)."""
    return sorted(d.name for d in _visible(resolve_root(root)) if d.is_dir())


def _labelled_files(root: Path, labels_from_filenames: bool) -> list[tuple[Path, str]]:
    if labels_from_filenames:
        return [(path, label_from_filename(path)) for path in files_below(root)]
    entries = _visible(root)
    class_dirs = sorted(d for d in entries if d.is_dir())
    if class_dirs and (loose := sorted(e.name for e in entries if not e.is_dir())):
        shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        warnings.warn(f"{root}: {shown} {'is a file' if len(loose) == 1 else 'are files'} beside the class folders, "
                      "not in one, so not used (each character's images go in its own folder)", stacklevel=3)
    if not class_dirs:
        raise DatasetError(
            f"{root} has no class folders (one folder per character); for a flat folder whose file names "
            "carry the labels (bart_simpson_12.jpg) use --labels-from-filenames"
        )
    return [(path, d.name) for d in class_dirs for path in files_below(d)]


def files_below(folder: Path) -> list[Path]:
    """Every non-hidden file anywhere below ``folder``, in sorted order (hidden folders are not entered)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return found


def check_images(paths: list[Path], progress: bool = True) -> list[str | None]:
    """For each file, why it is not a readable image, or None when it is; with a progress bar."""
    # Decoding releases the GIL, so threads use every core without pickling paths to processes.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(check_image, paths)
        return list(tqdm(results, total=len(paths), desc="checking images", unit="img", disable=not progress))

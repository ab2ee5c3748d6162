"""A Kaggle submission: one ``Id,Expected`` row per test image, as the journey-springfield competition's
``sample_submission.csv`` has them (``img0.jpg,homer_simpson``).

Kaggle scores a submission only when every test image has exactly one row. So a file that cannot be read still
gets its row, with the training set's most common character (the best guess without the image), and two files of
one name are refused before the model runs. ``Expected`` is always the top-1 character: a competition has no
answer for an unknown character, so the open-set threshold is not applied.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from ..data.run_data import RunData
from .files import FileResult, natural_key

SUBMISSION_COLUMNS = ("Id", "Expected")


def submission_id(path: str | Path) -> str:
    """A test image's Id: its file name."""
    return Path(path).name


def submission_order(files: list[Path]) -> list[Path]:
    """``files`` in natural order of their Ids (``img2.jpg`` before ``img10.jpg``); Ids must be unique."""
    seen: dict[str, Path] = {}
    for path in files:
        first = seen.setdefault(submission_id(path), path)
        if first is not path:
            raise ValueError(f"{first} and {path} have the same file name, and a submission's Ids (file names) "
                             "must be unique: give only one of them")
    return sorted(files, key=lambda path: natural_key(submission_id(path)))


def most_common_class(run_dir: str | Path, classes: list[str]) -> str:
    """The character with the most images in the run's dataset: the answer for an image that cannot be read."""
    counts = RunData.read(run_dir).class_counts
    return max(classes, key=lambda label: counts.get(label, 0))


def write_submission(results: Iterable[FileResult], stream: TextIO, fallback: str) -> list[FileResult]:
    """A row per result as it comes; returns the results that could not be read (their row says ``fallback``)."""
    writer = csv.writer(stream, lineterminator="\n")  # as sample_submission.csv has it
    writer.writerow(SUBMISSION_COLUMNS)
    unreadable = []
    for result in results:
        if result.prediction is None:
            unreadable.append(result)
        label = result.prediction.top_k[0][0] if result.prediction else fallback
        writer.writerow([submission_id(result.path), label])
    return unreadable

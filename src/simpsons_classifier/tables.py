"""CSV tables of a run (per-class scores, predictions, confused pairs...): one reader and one writer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from .storage import write_text_atomic


def write_rows(path: str | Path, header: Sequence, rows: Iterable[Sequence]) -> None:
    """Written atomically: a failed write (full disk, no permission) names the file and leaves no half of one."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))

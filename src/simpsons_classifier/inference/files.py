"""Prediction over files and folders: folders are walked recursively, files decoded in parallel threads and run
in batches; a file that cannot be read gets its reason and the others go on."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.images import UnreadableImage
from ..data.scan import files_below
from .options import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K
from .predictor import Prediction, Predictor

MAX_DECODE_THREADS = 8
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class FileResult:
    path: str
    prediction: Prediction | None
    error: str | None = None
    """Why the file could not be read; set exactly when ``prediction`` is None."""


def find_files(paths: list[str | Path]) -> list[Path]:
    """Files as given and every file below the folders given, in natural order (``img2`` before ``img10``); a
    path that does not exist is kept, so that it is reported rather than silently dropped."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(files_below(path), key=lambda f, top=path: _natural_path_key(f.relative_to(top))))
        else:
            found.append(path)
    return found


def natural_key(name: str) -> list[str | int]:
    """Orders runs of digits by their value: ``img2`` before ``img10``. One line, so no library for it: the
    split alternates text and digits, so equal positions always compare like with like."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(_DIGITS.split(name))]


def _natural_path_key(path: Path) -> list[list[str | int]]:
    return [natural_key(part) for part in path.parts]


def predict_files(
    predictor: Predictor,
    files: list[Path],
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Iterator[FileResult]:
    """One result per file, in order, a batch at a time; a progress bar when there is more than one batch."""
    show = progress and len(files) > batch_size
    with ThreadPoolExecutor(max_workers=min(MAX_DECODE_THREADS, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(files), desc="predicting", unit="img", disable=not show) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            decoded = list(pool.map(lambda path: _load(predictor, path), chunk))
            tensors = [t for t in decoded if isinstance(t, torch.Tensor)]
            predictions = iter(predictor.predict_batch(torch.stack(tensors), top_k) if tensors else [])
            for path, item in zip(chunk, decoded):
                if isinstance(item, torch.Tensor):
                    yield FileResult(str(path), next(predictions))
                else:
                    yield FileResult(str(path), None, item)
            bar.update(len(chunk))


def _load(predictor: Predictor, path: Path) -> torch.Tensor | str:
    """The preprocessed image, or why it cannot be had."""
    try:
        return predictor.load(path)
    except UnreadableImage as error:
        return f"not a readable image: {error}"
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"

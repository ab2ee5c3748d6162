"""``simpsons predict --run RUN PATH ...``: the top-k characters of image files and folders of images.

Every file gets one row; a file that cannot be read gets its reason instead and the rest go on. The exit status
is 1 only when no file at all could be read. ``--format kaggle`` writes a competition submission instead (see
``inference/submission.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TextIO

from . import add_run_argument
from ..inference.options import BACKEND_HELP, BACKENDS, DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, TORCH

FORMATS = ("table", "json", "csv", "kaggle")
MAX_PATH_COLUMN = 60
LABEL_COLUMN = 24


def register(subcommands) -> None:
    parser = subcommands.add_parser("predict", help="predict the characters in images (files or folders)")
    add_run_argument(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                        help=f"characters listed per image, best first (default {DEFAULT_TOP_K})")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="kaggle: a competition submission, one Id,Expected row per file (Id = file name, "
                             "Expected = the top-1 character, never unknown) in natural order (img2 before img10); "
                             "every file gets its row, an unreadable one the training set's most common character "
                             "(listed on stderr), as Kaggle needs every Id")
    parser.add_argument("--out", metavar="FILE", help="write there instead of to stdout (e.g. submission.csv)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--backend", choices=BACKENDS, default=TORCH, help=BACKEND_HELP)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per forward pass (default {DEFAULT_BATCH_SIZE})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.files import find_files, predict_files
    from ..inference.predictor import Predictor
    from ..inference.submission import most_common_class, submission_order

    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    files = find_files(args.paths)
    if not files:
        raise FileNotFoundError(f"no files in {' '.join(args.paths)}")
    kaggle = args.format == "kaggle"
    if kaggle:
        files = submission_order(files)  # duplicate Ids fail before the model loads
    predictor = Predictor.from_run(args.run, args.backend, args.tta)
    if kaggle:
        write = partial(write_kaggle, fallback=most_common_class(args.run, predictor.classes))
    else:
        if predictor.detector is None:
            print(f"note: {args.run} has no unknown-character threshold, so no image is called unknown; "
                  f"`simpsons evaluate --run {args.run}` calibrates one", file=sys.stderr)
        write = partial(WRITERS[args.format], top_k=args.top_k,
                        path_width=min(max(len(str(f)) for f in files), MAX_PATH_COLUMN))
    results = predict_files(predictor, files, args.top_k, args.batch_size)
    with output(args.out) as stream:
        failed = write(results, stream)
    if failed:
        print(f"{failed} of {len(files)} files could not be read", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed == len(files) else 0


@contextlib.contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """stdout, or ``path`` written whole or not at all (a half-written submission would be rejected)."""
    if path is None:
        yield sys.stdout
        return
    partial_path = Path(f"{path}.partial")
    try:
        with open(partial_path, "w", newline="") as stream:
            yield stream
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    os.replace(partial_path, path)


def write_kaggle(results: Iterable, stream: TextIO, fallback: str) -> int:
    from ..inference.submission import write_submission

    unreadable = write_submission(results, stream, fallback)
    for r in unreadable:
        print(f"{r.path}: {r.error}; its row says {fallback}, the most common character", file=sys.stderr)
    return len(unreadable)


def write_table(results: Iterable, stream: TextIO, top_k: int, path_width: int) -> int:
    """Rows as they come, so a long folder shows progress; returns how many files failed."""
    print(f"{'path':<{path_width}}  {'prediction':<{LABEL_COLUMN}}  top-{top_k}", file=stream, flush=True)
    failed = 0
    for r in results:
        if r.prediction is None:
            failed += 1
            print(f"{r.path:<{path_width}}  {'UNREADABLE':<{LABEL_COLUMN}}  {r.error}", file=stream, flush=True)
        else:
            ranked = "  ".join(f"{label} {p:.3f}" for label, p in r.prediction.top_k)
            print(f"{r.path:<{path_width}}  {r.prediction.label:<{LABEL_COLUMN}}  {ranked}", file=stream, flush=True)
    return failed


def write_json(results: Iterable, stream: TextIO, top_k: int, path_width: int) -> int:
    rows = [{
        "path": r.path,
        "prediction": r.prediction.label if r.prediction else None,
        "unknown": r.prediction.unknown if r.prediction else None,
        "top_k": [{"label": label, "probability": p} for label, p in r.prediction.top_k] if r.prediction else [],
        "error": r.error,
    } for r in results]
    json.dump(rows, stream, indent=2)
    print(file=stream)
    return sum(row["error"] is not None for row in rows)


def write_csv(results: Iterable, stream: TextIO, top_k: int, path_width: int) -> int:
    writer = csv.writer(stream)
    ranks = range(1, top_k + 1)
    writer.writerow(["path", "prediction", "unknown", *(f"{c}_{k}" for k in ranks for c in ("label", "probability")),
                     "error"])
    failed = 0
    for r in results:
        if r.prediction is None:
            failed += 1
            writer.writerow([r.path, "", "", *[""] * (2 * top_k), r.error])
            continue
        ranked = [v for label, p in r.prediction.top_k for v in (label, f"{p:.6f}")]
        writer.writerow([r.path, r.prediction.label, r.prediction.unknown, *ranked, *[""] * (2 * top_k - len(ranked)),
                         ""])
    return failed


WRITERS = {"table": write_table, "json": write_json, "csv": write_csv}

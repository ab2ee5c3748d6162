"""``simpsons predict --run RUN PATH ...``: the top-k characters of image files and folders of images.

Every file gets one row; a file that cannot be read gets its reason instead and the rest go on. The exit status
is 1 only when no file at all could be read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable

from ..inference.options import BACKEND_HELP, BACKENDS, DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, TORCH

FORMATS = ("table", "json", "csv")
MAX_PATH_COLUMN = 60
LABEL_COLUMN = 24


def register(subcommands) -> None:
    parser = subcommands.add_parser("predict", help="predict the characters in images (files or folders)")
    parser.add_argument("--run", required=True)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--backend", choices=BACKENDS, default=TORCH, help=BACKEND_HELP)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.files import find_files, predict_files
    from ..inference.predictor import Predictor

    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    predictor = Predictor.from_run(args.run, args.backend, args.tta)
    if predictor.rule is None:
        print(f"note: {args.run} has no unknown-character threshold, so no image is called unknown; "
              f"`simpsons evaluate --run {args.run}` calibrates one", file=sys.stderr)
    files = find_files(args.paths)
    if not files:
        raise FileNotFoundError(f"no files in {' '.join(args.paths)}")
    results = predict_files(predictor, files, args.top_k, args.batch_size)
    path_width = min(max(len(str(f)) for f in files), MAX_PATH_COLUMN)
    failed = WRITERS[args.format](results, args.top_k, path_width)
    if failed:
        print(f"{failed} of {len(files)} files could not be read", file=sys.stderr)
    return 1 if failed == len(files) else 0


def write_table(results: Iterable, top_k: int, path_width: int) -> int:
    """Rows as they come, so a long folder shows progress; returns how many files failed."""
    print(f"{'path':<{path_width}}  {'prediction':<{LABEL_COLUMN}}  top-{top_k}", flush=True)
    failed = 0
    for r in results:
        if r.prediction is None:
            failed += 1
            print(f"{r.path:<{path_width}}  {'UNREADABLE':<{LABEL_COLUMN}}  {r.error}", flush=True)
        else:
            ranked = "  ".join(f"{label} {p:.3f}" for label, p in r.prediction.top_k)
            print(f"{r.path:<{path_width}}  {r.prediction.label:<{LABEL_COLUMN}}  {ranked}", flush=True)
    return failed


def write_json(results: Iterable, top_k: int, path_width: int) -> int:
    rows = [{
        "path": r.path,
        "prediction": r.prediction.label if r.prediction else None,
        "unknown": r.prediction.unknown if r.prediction else None,
        "top_k": [{"label": label, "probability": p} for label, p in r.prediction.top_k] if r.prediction else [],
        "error": r.error,
    } for r in results]
    json.dump(rows, sys.stdout, indent=2)
    print()
    return sum(row["error"] is not None for row in rows)


def write_csv(results: Iterable, top_k: int, path_width: int) -> int:
    writer = csv.writer(sys.stdout)
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

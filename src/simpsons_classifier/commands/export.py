"""``simpsons export --run RUN --format onnx``: the model as a file that runs without this package."""

from __future__ import annotations

import argparse

EXPORT_FORMATS = ("onnx",)


def register(subcommands) -> None:
    parser = subcommands.add_parser("export", help="export a run's best model (ONNX) with its labels and preprocessing")
    parser.add_argument("--run", required=True)
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--out", help="folder to write (default RUN/export, where --backend onnx looks)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.export import METADATA_FILE, MODEL_FILE, export_onnx

    out_dir = export_onnx(args.run, args.out)
    print(f"exported {out_dir}/{MODEL_FILE} (input: N×3×H×W float32, output: logits) and {out_dir}/{METADATA_FILE} "
          "(classes, preprocessing, unknown-character threshold)")
    return 0

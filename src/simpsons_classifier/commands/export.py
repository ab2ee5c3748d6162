"""``simpsons export --run RUN --format onnx [--int8]``: the model as a file that runs without this package."""

from __future__ import annotations

import argparse

from . import add_run_argument
from ..inference.options import CALIBRATION_IMAGES

EXPORT_FORMATS = ("onnx",)


def register(subcommands) -> None:
    parser = subcommands.add_parser("export", help="export a run's best model (ONNX) with its labels and preprocessing")
    add_run_argument(parser)
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="file format (default onnx)")
    parser.add_argument("--int8", action="store_true",
                        help="also write an int8 model (static quantisation calibrated on the run's training "
                             "images), run by --backend onnx-int8")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES,
                        help=f"training images the int8 model is calibrated on (default {CALIBRATION_IMAGES})")
    parser.add_argument("--out", help="folder to write (default RUN/export, where the onnx backends look)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.export import FEATURES_NAME, FP32, INPUT_NAME, INT8, OUTPUT_NAME, ExportMetadata, export_onnx

    out_dir = export_onnx(args.run, args.out, args.int8, args.calibration_images)
    print(f"exported {out_dir}/{FP32.model_file} (input {INPUT_NAME}: N×3×H×W float32; outputs {OUTPUT_NAME} and "
          f"{FEATURES_NAME}) and "
          f"{out_dir}/{FP32.metadata_file} (classes, preprocessing, unknown-character threshold)")
    if args.int8:
        quantisation = ExportMetadata.read(out_dir, INT8).quantisation
        print(f"exported {out_dir}/{INT8.model_file} (int8, same input and output; calibrated on "
              f"{quantisation.calibration_images} training images) and {out_dir}/{INT8.metadata_file}")
    return 0

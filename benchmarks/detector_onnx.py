"""Does the detector's finder (``detection.model``: torchvision FCOS on EfficientNet-Lite0 with an FPN) export to
ONNX, answer the same in onnxruntime, and how fast, side by side with PyTorch?

The namer is not part of the export: it reads the stride-32 map that the finder's forward pass leaves behind, which
the TorchScript exporter turns into an extra graph input. Exporting the finder with that map as a second output,
and the namer (RoIAlign + a linear layer) as a second graph, is the way to a whole ONNX detector.

    python benchmarks/detector_onnx.py [--rounds R] [--threads T] [--try-dynamo]

The whole model is exported, its pre- and post-processing included (resize and normalise, box decoding, NMS), with
the image's height and width as dynamic axes, by the TorchScript exporter (``dynamo=False``, opset 17). The default
exporter (``torch.export``) stops at a data-dependent branch of torchvision's NMS (``batched_nms`` picks its
algorithm by the number of boxes; past that, ``_batched_nms_coordinate_trick`` tests for no boxes at all);
``--try-dynamo`` shows where. The TorchScript exporter is deprecated since PyTorch 2.9 (a warning, still working in
2.14).

Weights are random (seeded), with the score threshold lowered so that the 100 best boxes are kept and compared:
the figures are the largest difference of a box corner (pixels), of a score, and whether the labels agree, on
images of three sizes, then the median latency per image of each runtime (best of ``--rounds`` interleaved rounds),
on ``--threads`` CPU threads each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torchvision.models.detection import FCOS

from simpsons_classifier.detection.config import DetectConfig
from simpsons_classifier.detection.model import create_detector
from simpsons_classifier.models import create_model

CLASSES = 50
INPUT_SIZE = 320
SCORE_THRESHOLD = 0.05
"""Low enough that random weights keep the full 100 detections per image to compare."""
OPSET = 17
SIZES = ((240, 320), (320, 200), (480, 640))
"""Height x width of the test images: the export must follow the image's size, not the one it was traced at."""
CALLS_PER_ROUND = 5


def detector() -> FCOS:
    """The product detector's finder: FCOS on the feature pyramid. The namer is not exported (see the docstring)."""
    torch.manual_seed(0)
    model = create_detector(create_model("efficientnet_lite0", num_classes=1, weights="none"), CLASSES,
                            DetectConfig(scene_size=INPUT_SIZE))
    model.finder.score_thresh = SCORE_THRESHOLD
    return model.finder.eval()


def export(model: FCOS, path: Path, dynamo: bool) -> None:
    example = torch.rand(3, *SIZES[0])
    if dynamo:
        torch.onnx.export(model, ([example],), path, dynamo=True)
    else:
        torch.onnx.export(model, ([example],), path, dynamo=False, opset_version=OPSET, input_names=["image"],
                          output_names=["boxes", "scores", "labels"], dynamic_axes={"image": {1: "height", 2: "width"}})


def try_dynamo(model: FCOS, folder: Path) -> None:
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # it prints the whole graph
            export(model, folder / "dynamo.onnx", dynamo=True)
    except Exception as error:  # the figure is which error, and where
        cause = error.__cause__ or error
        where = next((line.strip() for line in str(cause).splitlines() if line.startswith("Caused by")), "")
        print(f"default exporter (dynamo): fails: {type(cause).__name__} {where}: {str(cause).splitlines()[0][:110]}")
    else:
        print("default exporter (dynamo): exports")


def best_median_ms(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for name, call in calls.items():  # warm-up
        call()
    for _ in range(rounds):
        for name, call in calls.items():
            samples = []
            for _ in range(CALLS_PER_ROUND):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            timings[name].append(statistics.median(samples) * 1000)
    return {name: min(values) for name, values in timings.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best counts")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for each runtime (default 1)")
    parser.add_argument("--try-dynamo", action="store_true", help="also try the default exporter, and say where it "
                                                                  "stops (a minute or more)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = detector()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as folder:
        if args.try_dynamo:
            try_dynamo(model, Path(folder))
        path = Path(folder) / "detector.onnx"
        start = time.perf_counter()
        export(model, path, dynamo=False)
        print(f"TorchScript exporter (dynamo=False, opset {OPSET}): exported in {time.perf_counter() - start:.1f} s, "
              f"{path.stat().st_size / 1e6:.1f} MB")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    print(f"{'image':>9}  {'boxes torch/onnx':>16}  {'max box diff (px)':>17}  {'max score diff':>14}  labels")
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(3, height, width, generator=generator) for height, width in SIZES]
    for image in images:
        with torch.inference_mode():
            expected = model([image])[0]
        boxes, scores, labels = session.run(None, {"image": image.numpy()})
        count = min(len(boxes), len(expected["boxes"]))
        box_diff = np.abs(boxes[:count] - expected["boxes"][:count].numpy()).max()
        score_diff = np.abs(scores[:count] - expected["scores"][:count].numpy()).max()
        same_labels = bool((labels[:count] == expected["labels"][:count].numpy()).all())
        size = f"{image.shape[2]}x{image.shape[1]}"
        print(f"{size:>9}  {len(expected['boxes']):>7}/{len(boxes):<8}  {box_diff:>17.2e}  {score_diff:>14.2e}  "
              f"{'same' if same_labels else 'DIFFER'}")
    image = images[0]

    def run_torch():
        with torch.inference_mode():
            return model([image])

    feed = {"image": image.numpy()}
    latency = best_median_ms({"torch": run_torch, "onnxruntime": lambda: session.run(None, feed)}, args.rounds)
    print(f"latency per {image.shape[2]}x{image.shape[1]} image, {args.threads} thread(s): "
          + ", ".join(f"{name} {ms:.0f} ms" for name, ms in latency.items())
          + f"  (onnxruntime {latency['torch'] / latency['onnxruntime']:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

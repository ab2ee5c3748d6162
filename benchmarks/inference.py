"""Batch-prediction speed: PyTorch eager against onnxruntime, float and int8 (the static quantisation of
``simpsons export --int8``), on the same model and the same images, at batch 1 and 32, for EfficientNet-Lite0 and
ResNet101 (random weights, and int8 models calibrated on random images: speed depends on neither), on the CPU.

The same run measures this machine's fp32 matrix-multiply throughput (the roofline a convolution network can at
best reach: the fastest of PyTorch's BLAS, NumPy's BLAS and onnxruntime's MLAS on a 2048² product) and reports ResNet101's throughput as a fraction of it, with FLOPs per image counted by
``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs). The fraction is given twice: per wall-clock second, and
per CPU second of this process (``time.process_time``, all its threads). On a machine shared with other work the
wall-clock shares differ between a 0.2 s matmul and a 7 s ResNet101 batch; CPU seconds are what each was given.

With ``--run RUN`` (a trained run) it also measures what int8 costs in accuracy: top-1 of the run's float and int8
exports on its validation images and how often their top-1 agrees, for int8 models with 7-bit weights
(``reduce_range``, for CPUs without VNNI) and 8-bit weights; and, for scale, the same for the float model on inputs
disturbed by uniform noise of half a grey level, less than the rounding of an 8-bit image.

    python benchmarks/inference.py [--json FILE] [--models NAME ...] [--run RUN]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.evaluation.run_model import eval_transform, sample_logits
from simpsons_classifier.inference.export import FP32, INPUT_NAME, INT8, ExportMetadata, export_model, export_onnx
from simpsons_classifier.inference.onnx_runtime import OnnxModule
from simpsons_classifier.inference.options import CALIBRATION_IMAGES
from simpsons_classifier.inference.quantize import calibration_batches, quantize_model
from simpsons_classifier.models import create_model
from simpsons_classifier.training import load_model

MODELS = ("efficientnet_lite0", "resnet101")
BATCH_SIZES = (1, 32)
IMAGE_SIZE = 224
NUM_CLASSES = 50
MIN_SECONDS = 3.0
MIN_ROUNDS = 3
"""Calls are timed in rounds (eager, onnxruntime, matmul, eager, ...) until each has run ``MIN_ROUNDS`` times and
``MIN_SECONDS`` in all, after one warm-up; each keeps its fastest call. Interleaving gives every contender the same
share of whatever else the machine is doing, and the fastest call is the least disturbed."""
MATMUL_SIZE = 2048
ROOFLINE_MODEL = "resnet101"
ROOFLINE_BATCH = 32
CALIBRATION_BATCHES = 4
"""Batches of random images the speed-only int8 models are calibrated on."""
FLOAT = "fp32"
INT8_VARIANTS = {"int8_7bit_weights": True, "int8_8bit_weights": False}
"""int8 models compared on a trained run, by their ``reduce_range``."""
NOISY_FLOAT = "fp32_input_noise"
NOISE_LEVELS = 0.5
"""The control: the float model on inputs disturbed by up to this many grey levels (less than 8-bit rounding)."""


def fastest_seconds(calls: dict[str, Callable[[], object]]) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the fastest of several interleaved calls of each of ``calls``."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    while any(len(t) < MIN_ROUNDS or sum(wall for wall, _ in t) < MIN_SECONDS for t in times.values()):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: min(t) for name, t in times.items()}


def flops_per_image(model: torch.nn.Module) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return counter.get_total_flops()


def matmul_calls() -> dict[str, Callable[[], object]]:
    """The same fp32 square product through each library that could set the roofline."""
    a, b = (np.random.default_rng(seed).standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32) for seed in (0, 1))
    shape = [MATMUL_SIZE, MATMUL_SIZE]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
    )
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return {"matmul_torch": lambda: ta @ tb, "matmul_numpy": lambda: a @ b,
            "matmul_onnxruntime": lambda: session.run(None, {"a": a, "b": b})}


def benchmark_model(name: str, scratch: Path, matmuls: dict[str, Callable[[], object]]
                    ) -> tuple[dict, dict[str, tuple[float, float]]]:
    """Images per wall-clock and per CPU second for each backend and batch size, and the fastest matmul seen
    meanwhile by each library (wall, CPU seconds)."""
    model = create_model(name, NUM_CLASSES, weights="none").eval()
    path, int8_path = scratch / f"{name}.onnx", scratch / f"{name}.int8.onnx"
    export_model(model, IMAGE_SIZE, path)
    generator = torch.Generator().manual_seed(0)
    quantize_model(path, int8_path, INPUT_NAME, (torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator).numpy()
                                                 for _ in range(CALIBRATION_BATCHES)))
    backends = {"eager": model, "onnxruntime": OnnxModule(path), "onnxruntime_int8": OnnxModule(int8_path)}
    result: dict = {"model": name, "gflops_per_image": flops_per_image(model) / 1e9, "images_per_second": {},
                    "images_per_cpu_second": {}}
    matmul_seconds = {name: (float("inf"), float("inf")) for name in matmuls}
    for batch in BATCH_SIZES:
        images = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            seconds = fastest_seconds({**{b: (lambda m=m: m(images)) for b, m in backends.items()}, **matmuls})
        matmul_seconds = {name: min(matmul_seconds[name], seconds.pop(name)) for name in matmuls}
        for backend, (wall, cpu) in seconds.items():
            result["images_per_second"][f"{backend}_batch{batch}"] = batch / wall
            result["images_per_cpu_second"][f"{backend}_batch{batch}"] = batch / cpu
            print(f"{name:<20} {backend:<17} batch {batch:>2}: {batch / wall:8.1f} images/s "
                  f"({batch / cpu:.1f} per CPU second)", flush=True)
    speeds = result["images_per_second"]
    result["onnxruntime_over_eager_batch32"] = speeds["onnxruntime_batch32"] / speeds["eager_batch32"]
    for clock, rates in (("wall", speeds), ("cpu", result["images_per_cpu_second"])):
        result[f"int8_over_fp32_onnxruntime_{clock}"] = {
            f"batch{b}": rates[f"onnxruntime_int8_batch{b}"] / rates[f"onnxruntime_batch{b}"] for b in BATCH_SIZES}
    return result, matmul_seconds


def int8_accuracy(run_dir: Path, scratch: Path) -> dict:
    """Top-1 on the run's validation images of its float export and its int8 models (7-bit and 8-bit weights),
    how often each agrees with the float model's top-1, and for scale the float model against itself on inputs
    disturbed by invisible noise."""
    export_dir = export_onnx(run_dir, scratch / "export", int8=True)
    exported = ExportMetadata.read(export_dir, INT8).quantisation
    loaded = load_model(run_dir)
    paths = {FLOAT: export_dir / FP32.model_file}
    for variant, reduce_range in INT8_VARIANTS.items():
        paths[variant] = export_dir / INT8.model_file if reduce_range == exported.reduce_range else \
            scratch / f"{variant}.onnx"
        if not paths[variant].exists():
            quantize_model(paths[FLOAT], paths[variant], INPUT_NAME,
                           calibration_batches(run_dir, loaded, CALIBRATION_IMAGES), reduce_range=reduce_range)
    val = RunData.read(run_dir).split.val
    top1: dict[str, torch.Tensor] = {}
    for variant, path in paths.items():
        logits, targets = sample_logits(replace(loaded, model=OnnxModule(path)), val, progress=False)
        top1[variant] = logits.argmax(1)
    logits, _ = sample_logits(replace(loaded, model=OnnxModule(paths[FLOAT])), val,
                              transform=_with_noise(eval_transform(loaded), loaded.std), progress=False)
    top1[NOISY_FLOAT] = logits.argmax(1)
    result = {"validation_images": len(val), "exported_reduce_range": exported.reduce_range,
              "top1": {variant: (predicted == targets).float().mean().item() for variant, predicted in top1.items()},
              "agreement_with_fp32": {variant: (predicted == top1[FLOAT]).float().mean().item()
                                      for variant, predicted in top1.items() if variant != FLOAT}}
    print(f"{run_dir} ({len(val)} validation images; the export chose reduce_range={exported.reduce_range}): "
          + ", ".join(f"{variant} top-1 {100 * t:.1f}%" for variant, t in result["top1"].items())
          + "; agreement with fp32: "
          + ", ".join(f"{variant} {100 * a:.1f}%" for variant, a in result["agreement_with_fp32"].items()))
    return result


def _with_noise(transform: Callable, std: tuple[float, ...]) -> Callable:
    """``transform`` plus uniform noise of ±``NOISE_LEVELS`` grey levels (one fixed pattern, so reproducible)."""
    scale = NOISE_LEVELS / 255 / torch.tensor(std).view(3, 1, 1)

    def noisy(image):
        tensor = transform(image)
        generator = torch.Generator().manual_seed(0)
        return tensor + (2 * torch.rand(tensor.shape, generator=generator) - 1) * scale

    return noisy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--run", help="a trained run: also compare the top-1 of its float and int8 exports")
    args = parser.parse_args()
    matmuls = matmul_calls()
    models, matmul_seconds, accuracy = [], [], None
    with tempfile.TemporaryDirectory() as scratch:
        if args.run:
            accuracy = int8_accuracy(Path(args.run), Path(scratch))
        for name in args.models:
            result, seconds = benchmark_model(name, Path(scratch), matmuls)
            models.append(result)
            matmul_seconds.append(seconds)
    matmul_gflop = 2 * MATMUL_SIZE**3 / 1e9
    per_library = {name: matmul_gflop / min(s[name][0] for s in matmul_seconds) for name in matmuls}
    roofline = {"wall": max(per_library.values()),
                "cpu": max(matmul_gflop / min(s[name][1] for s in matmul_seconds) for name in matmuls)}
    print(f"fp32 matmul ({MATMUL_SIZE}x{MATMUL_SIZE}, {torch.get_num_threads()} threads), GFLOP/s: " + ", ".join(
        f"{name.removeprefix('matmul_')} {g:.1f}" for name, g in per_library.items())
        + f"; roofline {roofline['wall']:.1f} GFLOP/s, {roofline['cpu']:.1f} GFLOP per CPU second")
    for m in models:
        print(f"{m['model']}: {m['gflops_per_image']:.2f} GFLOP/image; onnxruntime/eager at batch 32: "
              f"{m['onnxruntime_over_eager_batch32']:.2f}x; int8/fp32 onnxruntime: " + ", ".join(
                  f"{key} {ratio:.2f}x ({m['int8_over_fp32_onnxruntime_cpu'][key]:.2f}x per CPU second)"
                  for key, ratio in m["int8_over_fp32_onnxruntime_wall"].items()))
    results = {
        "machine": {"cpu": _cpu_name(), "int8_instructions": _int8_instructions(), "cores": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()},
        "matmul_gflops": per_library,
        "roofline_gflops": roofline["wall"],
        "roofline_gflop_per_cpu_second": roofline["cpu"],
        "models": models,
        "int8_accuracy": accuracy,
    }
    reference = next((m for m in models if m["model"] == ROOFLINE_MODEL), None)
    if reference is not None:
        key = f"batch{ROOFLINE_BATCH}"
        fractions = {f"{backend}_{clock}": reference[speeds][f"{backend}_{key}"] * reference["gflops_per_image"]
                     / roofline[clock] for backend in ("eager", "onnxruntime")
                     for clock, speeds in (("wall", "images_per_second"), ("cpu", "images_per_cpu_second"))}
        print(f"{ROOFLINE_MODEL} at batch {ROOFLINE_BATCH}, fraction of the fp32 matmul roofline: " + ", ".join(
            f"{name.replace('_', ' per ')} {100 * f:.0f}%" for name, f in fractions.items()))
        results[f"{ROOFLINE_MODEL}_fraction_of_roofline_batch{ROOFLINE_BATCH}"] = fractions
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor()


def _int8_instructions() -> list[str]:
    """The CPU's integer dot-product instructions onnxruntime's int8 kernels can use (empty when unknown)."""
    flags = set(_cpuinfo_field("flags").split())
    return [flag for flag in ("avx2", "avx512bw", "avx_vnni", "avx512_vnni", "amx_int8") if flag in flags]


def _cpuinfo_field(name: str) -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()

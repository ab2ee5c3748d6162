"""Batch-prediction speed: PyTorch eager against onnxruntime on the same model and the same images, at batch 1
and 32, for EfficientNet-Lite0 and ResNet101 (random weights: speed does not depend on them), on the CPU.

The same run measures this machine's fp32 matrix-multiply throughput (the roofline a convolution network can at
best reach: the fastest of PyTorch's BLAS, NumPy's BLAS and onnxruntime's MLAS on a 2048² product) and reports ResNet101's throughput as a fraction of it, with FLOPs per image counted by
``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs). The fraction is given twice: per wall-clock second, and
per CPU second of this process (``time.process_time``, all its threads). On a machine shared with other work the
wall-clock shares differ between a 0.2 s matmul and a 7 s ResNet101 batch; CPU seconds are what each was given.

    python benchmarks/inference.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from simpsons_classifier.inference.export import export_model
from simpsons_classifier.inference.onnx_runtime import OnnxModule
from simpsons_classifier.models import create_model

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
    path = scratch / f"{name}.onnx"
    export_model(model, IMAGE_SIZE, path)
    backends = {"eager": model, "onnxruntime": OnnxModule(path)}
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
            print(f"{name:<20} {backend:<12} batch {batch:>2}: {batch / wall:8.1f} images/s "
                  f"({batch / cpu:.1f} per CPU second)", flush=True)
    speeds = result["images_per_second"]
    result["onnxruntime_over_eager_batch32"] = speeds["onnxruntime_batch32"] / speeds["eager_batch32"]
    return result, matmul_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    matmuls = matmul_calls()
    models, matmul_seconds = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name in MODELS:
            result, seconds = benchmark_model(name, Path(scratch), matmuls)
            models.append(result)
            matmul_seconds.append(seconds)
    matmul_gflop = 2 * MATMUL_SIZE**3 / 1e9
    per_library = {name: matmul_gflop / min(s[name][0] for s in matmul_seconds) for name in matmuls}
    roofline = {"wall": max(per_library.values()),
                "cpu": max(matmul_gflop / min(s[name][1] for s in matmul_seconds) for name in matmuls)}
    reference = next(m for m in models if m["model"] == ROOFLINE_MODEL)
    key = f"batch{ROOFLINE_BATCH}"
    fractions = {f"{backend}_{clock}": reference[speeds][f"{backend}_{key}"] * reference["gflops_per_image"]
                 / roofline[clock] for backend in ("eager", "onnxruntime")
                 for clock, speeds in (("wall", "images_per_second"), ("cpu", "images_per_cpu_second"))}
    print(f"fp32 matmul ({MATMUL_SIZE}x{MATMUL_SIZE}, {torch.get_num_threads()} threads), GFLOP/s: " + ", ".join(
        f"{name.removeprefix('matmul_')} {g:.1f}" for name, g in per_library.items())
        + f"; roofline {roofline['wall']:.1f} GFLOP/s, {roofline['cpu']:.1f} GFLOP per CPU second")
    for m in models:
        print(f"{m['model']}: {m['gflops_per_image']:.2f} GFLOP/image; onnxruntime/eager at batch 32: "
              f"{m['onnxruntime_over_eager_batch32']:.2f}x")
    print(f"{ROOFLINE_MODEL} at batch {ROOFLINE_BATCH}, fraction of the matmul roofline: " + ", ".join(
        f"{name.replace('_', ' per ')} {100 * f:.0f}%" for name, f in fractions.items()))
    results = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "onnxruntime": ort.__version__, "python": platform.python_version()},
        "matmul_gflops": per_library,
        "roofline_gflops": roofline["wall"],
        "roofline_gflop_per_cpu_second": roofline["cpu"],
        "models": models,
        f"{ROOFLINE_MODEL}_fraction_of_roofline_batch{ROOFLINE_BATCH}": fractions,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()

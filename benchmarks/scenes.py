"""Detection scene composition speed on one core: milliseconds per scene, cut-outs read cold and cached.

    python benchmarks/scenes.py [--data FOLDER] [--scenes N] [--size PX]

Scenes of ``--size`` pixels (default 320, SceneRecipe's default recipe otherwise) composed on the built-in
backgrounds from ``--data`` (a folder of class folders, e.g. the stand-in) or, by default, from synthetic
400 x 300 cartoons (``cartoons.py``; half sprites on white saved as PNG, half on a scene saved as JPEG, the sizes
of Kaggle Simpsons frames). *Cold*: every cut-out not yet cached, so each character costs a decode and a mask;
*cached*: the same scenes again, every cut-out in the composer's cache. OpenCV and torch run single-threaded; time
is this thread's CPU time, so other processes sharing the core do not count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from cartoons import cartoon
from simpsons_classifier.augment.background import load_backgrounds
from simpsons_classifier.detection.scenes import CUTOUT_CACHE_SIZE, SceneComposer, SceneRecipe, load_cutout

CLASSES = 10
PER_CLASS = 20
JPEG_QUALITY = 90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder of class folders (default: synthetic cartoons)")
    parser.add_argument("--scenes", type=int, default=100, help="scenes per measurement (default 100)")
    parser.add_argument("--size", type=int, default=SceneRecipe.size, help="scene side in pixels (default 320)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data or write_cartoons(Path(scratch))
        samples = [(path, label) for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir()))
                   for path in sorted(folder.iterdir()) if path.is_file()]
        composer = SceneComposer(samples, load_backgrounds(None), SceneRecipe(size=args.size))
        if len(samples) > CUTOUT_CACHE_SIZE:
            print(f"note: {len(samples)} images > the {CUTOUT_CACHE_SIZE}-cut-out cache: 'cached' still reads some")
        cold = ms_per_scene(composer, args.scenes)
        characters = sum(len(composer.scene(index).labels) for index in range(args.scenes))
        cached = ms_per_scene(composer, args.scenes)
    print(f"{len(samples)} images from {args.data or 'synthetic cartoons'}, {args.size} px scenes, "
          f"{characters / args.scenes:.1f} boxes per scene")
    print(f"cold (decode + mask per character): {cold:6.2f} ms/scene")
    print(f"cut-outs cached:                    {cached:6.2f} ms/scene")
    print(f"cache: {load_cutout.cache_info()}")
    return 0


def write_cartoons(folder: Path) -> Path:
    for label in range(CLASSES):
        (folder / f"class{label}").mkdir()
        for i in range(PER_CLASS):
            seed = label * PER_CLASS + i
            if i % 2:
                cartoon(seed, scene=True).save(folder / f"class{label}" / f"{i}.jpg", quality=JPEG_QUALITY)
            else:
                cartoon(seed).save(folder / f"class{label}" / f"{i}.png")
    return folder


def ms_per_scene(composer: SceneComposer, scenes: int) -> float:
    start = time.thread_time()
    for index in range(scenes):
        composer.scene(index)
    return (time.thread_time() - start) / scenes * 1000


if __name__ == "__main__":
    sys.exit(main())

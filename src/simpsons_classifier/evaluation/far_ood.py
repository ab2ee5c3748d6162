"""Far-away inputs for the open-set figures: images that are no cartoon character at all.

Built offline, the same on every machine, written once to the cache folder and read from there as files:

- ``photos``: crops of the photographs bundled with scikit-image that training's background mixing never uses
  (:data:`FAR_PHOTOS`), and its small set of face photos (Labeled Faces in the Wild).
- ``noise``: uniform noise, smooth random fields and scattered blobs, in colour.

Any other folder of images (another cartoon set, frames without characters) can be added with
``simpsons evaluate --far DIR``.

A third set, disjoint from those, is never reported: the images a run's score is chosen on
(:func:`far_selection_set`), crops of training's background photographs and noise of another draw.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..augment.background import BUILTIN_PHOTOS
from ..data.images import check_image
from ..data.scan import Sample, files_below
from ..data.standin import default_cache_dir

FAR_PHOTOS = ("motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "moon.png", "coins.png", "horse.png",
              "cell.png", "clock_motion.png", "color.png", "page.png", "text.png", "microaneurysms.png")
"""scikit-image photographs absent from training's built-in backgrounds (``augment.background.BUILTIN_PHOTOS``)."""
CROPS_PER_PHOTO = 5
FACES = 60
NOISE_PER_KIND = 30
IMAGE_SIZE = 160
SEED = 20_261_201
SELECTION_SEED = SEED + 1
VERSION = 1
"""Bumped whenever the images change, so that a cache of older ones is rebuilt."""


def far_ood_sets(cache_dir: Path | None = None) -> dict[str, list[Sample]]:
    """``{set name: samples}`` of the built-in far-away sets, built into the cache on first use."""
    return {name: _cached(cache_dir, name, build, SEED) for name, build in
            (("photos", lambda rng: _photos(rng, FAR_PHOTOS, FACES)), ("noise", _noise))}


def far_selection_set(cache_dir: Path | None = None) -> list[Sample]:
    """Far-away images to choose a score on, none of them among :func:`far_ood_sets`' (the figures' images):
    crops of training's background photographs (never far-away photos) and noise of another draw."""
    return (_cached(cache_dir, "selection-photos", lambda rng: _photos(rng, BUILTIN_PHOTOS, faces=0), SELECTION_SEED)
            + _cached(cache_dir, "selection-noise", _noise, SELECTION_SEED))


def _cached(cache_dir: Path | None, name: str, build: Callable[[np.random.Generator], list[Image.Image]],
            seed: int) -> list[Sample]:
    """The images ``build`` makes from a generator seeded with ``seed``, written once into the cache as ``name``."""
    folder = (cache_dir or default_cache_dir()) / f"far-ood-v{VERSION}" / name
    if not folder.is_dir():
        partial = folder.with_name(f".{name}.partial")
        partial.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(build(np.random.default_rng(seed))):
            image.save(partial / f"{name}_{i:03d}.png")
        partial.rename(folder)
    return [Sample(str(path), name) for path in sorted(folder.glob("*.png"))]


def folder_set(folder: str | Path) -> list[Sample]:
    """Every readable image under ``folder`` (recursively), as one far-away set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--far {folder}: not a folder")
    samples = [Sample(str(p), folder.name) for p in files_below(folder) if check_image(p) is None]
    if not samples:
        raise ValueError(f"--far {folder}: no readable image in it")
    return samples


def _photos(rng: np.random.Generator, names: tuple[str, ...], faces: int) -> list[Image.Image]:
    """Crops of the scikit-image photographs ``names`` and ``faces`` of its face photos."""
    data = resources.files("skimage.data")
    images = []
    for name in names:
        if not (data / name).is_file():
            continue
        with resources.as_file(data / name) as path, Image.open(path) as photo:
            photo = photo.convert("RGB")
        for _ in range(CROPS_PER_PHOTO):
            side = int(rng.uniform(0.4, 1.0) * min(photo.size))
            x, y = (int(rng.integers(0, extent - side + 1)) for extent in photo.size)
            images.append(photo.crop((x, y, x + side, y + side)).resize((IMAGE_SIZE, IMAGE_SIZE)))
    with resources.as_file(data / "lfw_subset.npy") as path:
        all_faces = np.load(path)
    for face in all_faces[rng.choice(len(all_faces), size=min(faces, len(all_faces)), replace=False)]:
        grey = Image.fromarray((face * 255).astype(np.uint8))
        images.append(grey.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
    return images


def _noise(rng: np.random.Generator) -> list[Image.Image]:
    size = IMAGE_SIZE
    images = []
    for _ in range(NOISE_PER_KIND):
        images.append(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        cells = int(rng.integers(2, 12))
        field = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        images.append(Image.fromarray(field).resize((size, size), Image.BICUBIC))
        canvas = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        y, x = np.mgrid[:size, :size]
        for _ in range(int(rng.integers(3, 15))):
            cx, cy, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(5, size // 4))]
            canvas[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        images.append(Image.fromarray(canvas))
    return images

"""Small synthetic datasets in the folder-per-class layout, and tiny configs that train in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from simpsons_classifier.config import Config

SOURCES = ("dreamworld", "bw_front", "bw_front_shiny", "gen7x_regular", "icon_shiny")


def draw_character(class_index: int, variant: int, size: int = 48) -> Image.Image:
    """A coloured shape on white: class decides colour and shape, variant shifts it a little."""
    rng = np.random.default_rng(class_index * 100 + variant)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    colour = np.array([(class_index * 97) % 256, (class_index * 53 + 80) % 256, (class_index * 31 + 160) % 256])
    y, x = np.mgrid[:size, :size]
    cy, cx = size // 2 + rng.integers(-4, 5), size // 2 + rng.integers(-4, 5)
    if class_index % 2 == 0:
        mask = (y - cy) ** 2 + (x - cx) ** 2 < (size // 4) ** 2
    else:
        mask = (abs(y - cy) < size // 4) & (abs(x - cx) < size // 5 + class_index % 3)
    image[mask] = colour
    return Image.fromarray(image)


def make_dataset(root: Path, classes: int = 4, per_source: int = 2, sources=SOURCES) -> Path:
    """``root/NNN_classK/SOURCE__i.png``: the stand-in's layout, so both split kinds apply."""
    for c in range(classes):
        folder = root / f"{c:03d}_class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for s, source in enumerate(sources):
            for i in range(per_source):
                draw_character(c, s * per_source + i).save(folder / f"{source}__{i}.png")
    return root


def tiny_config(**overrides) -> Config:
    """A config that trains a small ResNet in seconds on the CPU."""
    values = dict(
        backbone="resnet10t",
        weights="none",
        image_size=32,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        head_init="random",
        unfreeze_epoch=1,
        unfreeze_fraction=None,
        ema_decay=0.9,
        num_workers=0,
        channels_last=False,
        background_mix_prob=0.0,
    )
    values.update(overrides)
    return Config.from_dict(values)


def make_unlabeled_folder(root: Path, known=(0, 1, 2, 3), unknown=(6, 7), per_class: int = 3,
                          unreadable: int = 1) -> Path:
    """Known characters' new drawings, drawings of characters the data lacks, and files that are not images, in
    sub-folders and loose."""
    root.mkdir(parents=True)
    for c in (*known, *unknown):
        for v in range(per_class):
            folder = root / ("loose" if c % 2 else "")
            folder.mkdir(exist_ok=True)
            draw_character(c, 50 + v).save(folder / f"frame_{c}_{v}.png")
    for i in range(unreadable):
        (root / f"broken_{i}.jpg").write_bytes(b"not an image")
    return root

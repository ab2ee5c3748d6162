"""A robustness score: validation images pasted onto backgrounds never used in training.

A model that learned the character rather than its usual surroundings keeps its accuracy when the surroundings
change. The backgrounds here (stripes, checkerboards, scattered discs in random colours) are a family that the
training-time background mixing never draws from (it uses photographs, gradients and blurred noise), and the
paste uses the same foreground mask, so the score measures transfer to new backgrounds, not memorised ones.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..augment import BackgroundMixing

UNSEEN_BACKGROUND_SEED = 20_251_125
UNSEEN_BACKGROUNDS_PER_KIND = 6
UNSEEN_BACKGROUND_SIZE = 256
ROBUSTNESS_SEED = 0


def unseen_backgrounds(count_per_kind: int = UNSEEN_BACKGROUNDS_PER_KIND, size: int = UNSEEN_BACKGROUND_SIZE):
    """Stripes, checkerboards and discs in random colours: deterministic, and unlike any training background."""
    rng = np.random.default_rng(UNSEEN_BACKGROUND_SEED)
    y, x = np.mgrid[:size, :size]
    images = []
    for _ in range(count_per_kind):
        a, b = rng.integers(0, 256, size=(2, 3), dtype=np.uint8)
        period = int(rng.integers(8, 48))
        angle = rng.uniform(0, np.pi)
        stripes = ((x * np.cos(angle) + y * np.sin(angle)) // period % 2).astype(bool)
        checks = ((x // period + y // period) % 2).astype(bool)
        discs = np.zeros((size, size), dtype=bool)
        for cx, cy, r in zip(*rng.integers(0, size, size=(2, 12)), rng.integers(6, 30, size=12)):
            discs |= (x - cx) ** 2 + (y - cy) ** 2 < r**2
        images += [Image.fromarray(np.where(pattern[..., None], a, b)) for pattern in (stripes, checks, discs)]
    return images


def pasting_transform(eval_transform):
    """``eval_transform`` preceded by pasting the character onto an unseen background (always applied)."""
    paste = BackgroundMixing(unseen_backgrounds(), p=1.0)
    return lambda image: eval_transform(paste(image))


def seeded() -> None:
    """Fix the draws of backgrounds so the score is the same every time it is computed."""
    torch.manual_seed(ROBUSTNESS_SEED)

"""Draws docs/augment-preview.png for the README: ``simpsons augment-preview`` on synthetic cartoons.

    python benchmarks/readme_figure.py

The characters are drawn by ``cartoons.py`` (two on white, two on a scene), so the picture holds no
third-party art. The grid is stored with a 256-colour palette to stay small.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from cartoons import cartoon
from simpsons_classifier.cli import main as simpsons

OUT = Path(__file__).resolve().parent.parent / "docs" / "augment-preview.png"
CHARACTERS = 4
TILE_PX = 128
PALETTE_COLOURS = 256


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(CHARACTERS):
            cartoon(seed, scene=seed % 2 == 1).save(Path(folder) / f"{seed}.png")
        status = simpsons(["augment-preview", "--data", folder, "--out", str(OUT), "--n", str(CHARACTERS),
                           "--tile", str(TILE_PX)])
    with Image.open(OUT) as grid:
        grid.quantize(PALETTE_COLOURS, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"{OUT}: {OUT.stat().st_size // 1024} KB")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""How much do two video frames differ, on the measure ``simpsons data frames --min-change`` leaves frames out by?

    python benchmarks/frame_change.py [--data data/standin]

A stand-in character (its sprite at 192 px) on a photo background (640x360, scikit-image's), then: the sprite's
next animation frames (a blink, a mouth: the same shot), a JPEG re-encoding, the character moved 20 px, a pan of
the whole picture, another character in the same place and another background (cuts). Prints the mean absolute
difference of the grey thumbnails (0 to 1) for each, beside the default ``--min-change``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

from simpsons_classifier.data.frames import MIN_CHANGE, grey_thumbnail

SPRITE_PX = 192


def frame(sprite: Path, background: str, pan: int = 0, at: tuple[int, int] = (250, 120)) -> np.ndarray:
    """A BGR frame: the sprite pasted at ``at`` on the background, the background rolled ``pan`` px sideways."""
    photo = Image.fromarray(getattr(skimage.data, background)()).convert("RGB").resize((640, 360))
    canvas = Image.fromarray(np.roll(np.asarray(photo), pan, axis=1))
    character = Image.open(sprite).convert("RGBA").resize((SPRITE_PX, SPRITE_PX), Image.NEAREST)
    canvas.paste(character, at, character)
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/standin"))
    args = parser.parse_args()
    first, other = sorted(p for p in args.data.iterdir() if p.is_dir())[:2]
    start = frame(first / "bw_front__0.png", "astronaut")
    jpeg = cv2.imdecode(cv2.imencode(".jpg", start, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
    changes = {
        "JPEG at quality 60": jpeg,
        "next animation frame": frame(first / "bw_front__1.png", "astronaut"),
        "the one after": frame(first / "bw_front__2.png", "astronaut"),
        "character moved 20 px": frame(first / "bw_front__0.png", "astronaut", at=(270, 120)),
        "another character, same place": frame(other / "bw_front__0.png", "astronaut"),
        "pan of 32 px (5 %)": frame(first / "bw_front__0.png", "astronaut", pan=32),
        "another background": frame(first / "bw_front__0.png", "coffee"),
    }
    print(f"mean absolute difference of grey thumbnails from the first frame (--min-change default {MIN_CHANGE}):")
    for name, changed in changes.items():
        difference = float(np.abs(grey_thumbnail(changed) - grey_thumbnail(start)).mean())
        print(f"  {name:<32} {difference:.3f}  {'kept' if difference >= MIN_CHANGE else 'left out'}")


if __name__ == "__main__":
    main()

"""``simpsons augment-preview``: a picture of what the model sees, originals beside weak and strong samples."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageOps
import torch

from ..config import Config
from . import add_config_arguments

WEAK_SAMPLES = 2
STRONG_SAMPLES = 4
HEADER_PX = 20
GAP_PX = 2
PAPER = (255, 255, 255)


def register(subcommands) -> None:
    parser = subcommands.add_parser("augment-preview", help="draw originals beside weak and strong augmented samples")
    parser.add_argument("--data", required=True, help="folder of images, searched recursively")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--n", type=int, default=8, help="images to show, one per row (default 8)")
    parser.add_argument("--tile", type=int, help="side of each picture in pixels (default: image_size)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the augmentation (default 0)")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..augment import build_train_transform
    from ..data.images import UnreadableImage, load_rgb
    from ..data.scan import files_below
    from ..models.factory import IMAGENET_MEAN, IMAGENET_STD

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    config = Config.load(args.config, args.set)
    folder = Path(args.data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {folder} is not a folder")
    images = []
    for path in _evenly_spaced(files_below(folder), args.n):
        try:
            images.append(load_rgb(path, draft_size=(2 * config.image_size, 2 * config.image_size)))
        except UnreadableImage:
            continue  # not an image: one row fewer
    if not images:
        raise ValueError(f"no readable image under {folder}")
    transform = build_train_transform(config, IMAGENET_MEAN, IMAGENET_STD)
    torch.manual_seed(args.seed)
    grid = preview_grid(
        images, transform.weak, transform.strong, IMAGENET_MEAN, IMAGENET_STD, args.tile or config.image_size
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}: {len(images)} images ({config.augment_engine} engine), each with "
          f"{WEAK_SAMPLES} weak and {STRONG_SAMPLES} strong samples")
    return 0


def preview_grid(
    images: Sequence[PIL.Image.Image],
    weak: Callable[[PIL.Image.Image], torch.Tensor],
    strong: Callable[[PIL.Image.Image], torch.Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    tile: int,
) -> PIL.Image.Image:
    """One row per image: the original (whole, letterboxed), then weak and strong samples; labelled columns."""
    titles = ["original"] + ["weak"] * WEAK_SAMPLES + ["strong"] * STRONG_SAMPLES
    step = tile + GAP_PX
    grid = PIL.Image.new("RGB", (len(titles) * step - GAP_PX, HEADER_PX + len(images) * step - GAP_PX), PAPER)
    draw = PIL.ImageDraw.Draw(grid)
    for column, title in enumerate(titles):
        draw.text((column * step + 4, 4), title, fill=(0, 0, 0))
    for row, image in enumerate(images):
        samples = [weak(image) for _ in range(WEAK_SAMPLES)] + [strong(image) for _ in range(STRONG_SAMPLES)]
        tiles = [PIL.ImageOps.pad(image, (tile, tile), color=PAPER)]
        tiles += [_to_image(sample, mean, std).resize((tile, tile), PIL.Image.BILINEAR) for sample in samples]
        for column, picture in enumerate(tiles):
            grid.paste(picture, (column * step, HEADER_PX + row * step))
    return grid


def _to_image(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> PIL.Image.Image:
    """A 3 x H x W sample (uint8, or normalised float) back to an RGB image."""
    if tensor.dtype == torch.uint8:
        return PIL.Image.fromarray(tensor.permute(1, 2, 0).numpy())
    pixels = tensor * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return PIL.Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _evenly_spaced(paths: Sequence[Path], count: int) -> list[Path]:
    """Up to ``count`` of ``paths``, spread over the whole sorted list (so over the classes)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]

"""What the last convolutional stage sees: its strongest channels for one image, as heat maps over it.

``forward_features`` is timm's output of the last stage before pooling for every architecture (ResNet
``layer4``, EfficientNet after ``conv_head``): 7×7 at 224 px. A channel's strength is its mean activation on
this image, the number the global pool hands to the classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .figures import tile_grid
from .gradcam import overlay

CHANNELS_SHOWN = 8
GRID_COLUMNS = 3


@torch.no_grad()
def feature_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] activations of the last stage for normalised ``images``."""
    return model.forward_features(images).float()


def strongest_channels(maps: torch.Tensor, count: int = CHANNELS_SHOWN) -> list[int]:
    """Channels of one image's [C, h, w] maps by mean activation, strongest first."""
    return maps.mean(dim=(1, 2)).argsort(descending=True)[:count].tolist()


def plot_feature_maps(image_rgb: np.ndarray, maps: torch.Tensor, title: str, path: str | Path) -> None:
    """The image, then its strongest channels, each scaled to its own maximum and blended over the image."""
    channels = strongest_channels(maps)
    tiles, titles = [image_rgb], ["image"]
    for channel in channels:
        heat = maps[channel].clamp_min(0)
        tiles.append(overlay(image_rgb, (heat / heat.max().clamp_min(1e-12)).numpy()))
        titles.append(f"channel {channel} (mean {maps[channel].mean():.2f})")
    height, width = maps.shape[1:]
    tile_grid(tiles, titles, GRID_COLUMNS,
              f"{title}\nstrongest {len(channels)} of {len(maps)} last-stage channels ({height}×{width}, upsampled)",
              path, tile_inches=2.2)

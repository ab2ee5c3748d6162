"""Explanation pictures: Grad-CAM finds a planted object, kernel and feature-map grids show what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from pictures import framed_tiles
from torch import nn

from simpsons_classifier.explain.feature_maps import CHANNELS_SHOWN, plot_feature_maps, strongest_channels
from simpsons_classifier.explain.gradcam import gradcam, overlay, target_layer
from simpsons_classifier.explain.kernels import FILTERS_SHOWN, cluster_order, kernel_layers, plot_kernels_3x3
from simpsons_classifier.models import set_trainable_stages

PLANT_SIZE, CELL, OBJECT = 96, 32, 16  # a 3×3 grid of cells; the last stage of a ResNet is 3×3 at 96 px


def planted_batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noise with one red (class 0) or green (class 1) square inside one cell of a 3×3 grid."""
    images = rng.normal(0.5, 0.15, (n, 3, PLANT_SIZE, PLANT_SIZE)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    cells = rng.integers(0, PLANT_SIZE // CELL, (n, 2))
    corners = cells * CELL + rng.integers(0, CELL - OBJECT + 1, (n, 2))
    for image, label, (top, left) in zip(images, labels, corners):
        image[:, top : top + OBJECT, left : left + OBJECT] = 0.0
        image[label, top : top + OBJECT, left : left + OBJECT] = 1.0
    return torch.from_numpy(images), torch.from_numpy(labels), cells


@pytest.mark.slow
def test_gradcam_peaks_on_the_planted_object_of_a_partly_frozen_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = timm.create_model("resnet10t", num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(12):
        images, labels, _ = planted_batch(16, rng)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    set_trainable_stages(model, ["head"])  # as a checkpoint trained with a frozen backbone would be used
    model.train()
    trainable = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]

    images, labels, cells = planted_batch(16, rng)
    cams = gradcam(model, images, labels.tolist())

    assert cams.shape == (16, PLANT_SIZE, PLANT_SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    cell_heat = cams.reshape(16, 3, CELL, 3, CELL).mean(axis=(2, 4))
    peaks = [np.unravel_index(h.argmax(), h.shape) for h in cell_heat]
    hits = sum(tuple(p) == tuple(c) for p, c in zip(peaks, cells))
    assert hits >= 14, f"the CAM peaked on the planted square in only {hits} of 16 images"
    assert [p.requires_grad for p in model.parameters()] == trainable
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())

    blended = overlay(np.full((40, 50, 3), 255, np.uint8), cams[0])
    assert blended.shape == (40, 50, 3) and blended.dtype == np.uint8


def test_target_and_kernel_layers_per_family():
    resnet = timm.create_model("resnet101", num_classes=3)
    assert target_layer(resnet) is resnet.layer4[-1]
    assert {k: name for k, (name, _) in kernel_layers(resnet).items()} == {
        "3x3": "layer4.2.conv2", "1x1": "layer4.2.conv3"}
    effnet = timm.create_model("efficientnet_lite0", num_classes=3)
    assert target_layer(effnet) is effnet.conv_head
    assert {k: name for k, (name, _) in kernel_layers(effnet).items()} == {
        "3x3": "blocks.6.0.conv_dw", "1x1": "blocks.6.0.conv_pwl"}
    basic = timm.create_model("resnet10t", num_classes=3)  # BasicBlocks: two 3×3 convs, no 1×1
    assert {k: name for k, (name, _) in kernel_layers(basic).items()} == {"3x3": "layer4.0.conv2"}
    mobilenet = timm.create_model("mobilenetv3_small_050", num_classes=3)
    assert target_layer(mobilenet) is mobilenet.blocks[-1]  # timm's last feature stage
    assert {k: name for k, (name, _) in kernel_layers(mobilenet).items()} == {
        "3x3": "blocks.4.2.conv_dw", "1x1": "conv_head"}


def test_kernel_grid_has_one_tile_per_filter_strongest_first(tmp_path):
    conv = nn.Conv2d(4, 12, 3)
    plus = torch.tensor([[-1.0, 1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, -1.0]])
    with torch.no_grad():
        conv.weight.normal_(0, 0.01)
        conv.weight[7, 2] = plus  # filter 7 is the strongest, and its input slice 2 is what it looks at
    plot_kernels_3x3(conv, "planted", tmp_path / "k.png")

    tiles = framed_tiles(tmp_path / "k.png")
    assert len(tiles) == 12
    pixels = np.asarray(Image.open(tmp_path / "k.png").convert("RGB")).astype(int)
    rows, cols = tiles[0]

    def colour(i: int, j: int) -> np.ndarray:
        y = rows.start + (2 * i + 1) * (rows.stop - rows.start) // 6
        x = cols.start + (2 * j + 1) * (cols.stop - cols.start) // 6
        return pixels[y, x]

    for i in range(3):
        for j in range(3):
            red, _, blue = colour(i, j)  # RdBu_r: +1 is dark red (103, 0, 31), -1 dark blue (5, 48, 97)
            assert (red > blue + 50) == (plus[i, j] > 0) and (blue > red + 50) == (plus[i, j] < 0), (i, j, colour(i, j))

    depthwise = nn.Conv2d(FILTERS_SHOWN + 6, FILTERS_SHOWN + 6, 3, groups=FILTERS_SHOWN + 6)
    plot_kernels_3x3(depthwise, "depthwise", tmp_path / "d.png")
    assert len(framed_tiles(tmp_path / "d.png")) == FILTERS_SHOWN


def test_1x1_matrix_order_brings_correlated_filters_together():
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(3, 40))
    groups = np.repeat(np.arange(3), 10)
    matrix = patterns[groups] + 0.1 * rng.normal(size=(30, 40))
    shuffled = rng.permutation(30)
    ordered_groups = groups[shuffled][cluster_order(matrix[shuffled])]
    assert (np.diff(ordered_groups) != 0).sum() == 2  # three contiguous blocks


def test_feature_map_picture_shows_the_image_and_the_strongest_channels(tmp_path):
    maps = torch.rand(20, 7, 7) * 0.1
    maps[13] += 5.0
    maps[4] += 3.0
    assert strongest_channels(maps)[:2] == [13, 4]
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = (255, 200, 0)
    plot_feature_maps(image, maps, "sample", tmp_path / "f.png")
    assert len(framed_tiles(tmp_path / "f.png")) == 1 + CHANNELS_SHOWN

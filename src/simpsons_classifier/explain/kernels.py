"""Pictures of the last block's learned filters: its spatial 3×3 convolution and its pointwise 1×1 one.

A 3×3 filter of a full convolution has one 3×3 slice per input channel; the slice with the largest norm is the
one that filter mostly looks at, so each tile shows that slice, scaled to its own largest magnitude (red
positive, blue negative). A 1×1 convolution is a plain output × input matrix; ordered by hierarchical
clustering of its rows and columns, filters that combine the inputs alike sit together and blocks appear.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from torch import nn

from ..models import family_of
from .figures import DPI, tile_grid

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from ..run_dir import ExplainDir  # noqa: E402
from ..storage import write_figure  # noqa: E402

FILTERS_SHOWN = 64
GRID_COLUMNS = 8
MATRIX_CLIP_PERCENTILE = 99  # colour scale of the 1×1 matrix: a few outliers would wash out the rest
KERNEL_CMAP = "RdBu_r"


def kernel_layers(model: nn.Module) -> dict[str, tuple[str, nn.Conv2d]]:
    """``{"3x3": (module name, conv), "1x1": (module name, conv)}`` as the model family registry names them;
    "1x1" is absent when the block has none, and both for a family without kernel pictures."""
    spatial, pointwise = family_of(model).kernel_convs(model)
    if spatial is None:
        return {}
    names = {module: name for name, module in model.named_modules()}
    layers = {"3x3": (names[spatial], spatial)}
    if pointwise is not None:
        layers["1x1"] = (names[pointwise], pointwise)
    return layers


def strongest_slices(weight: np.ndarray, count: int = FILTERS_SHOWN) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` filters of largest norm (indices, strongest first) and each one's strongest input slice."""
    norms = np.sqrt((weight**2).sum(axis=(1, 2, 3)))
    filters = np.argsort(-norms, kind="stable")[:count]
    slice_norms = np.sqrt((weight[filters] ** 2).sum(axis=(2, 3)))
    slices = weight[filters, slice_norms.argmax(axis=1)]
    return filters, slices


def plot_kernels_3x3(conv: nn.Conv2d, name: str, path: str | Path) -> None:
    weight = conv.weight.detach().float().cpu().numpy()
    filters, slices = strongest_slices(weight)
    depthwise = conv.groups == conv.in_channels and conv.groups > 1
    what = "depthwise, one slice per filter" if depthwise else "each filter's strongest input slice"
    size = "×".join(map(str, conv.kernel_size))
    tile_grid([tile / max(np.abs(tile).max(), 1e-12) for tile in slices], [f"#{i}" for i in filters],
              GRID_COLUMNS, f"{name}: {len(filters)} of {weight.shape[0]} {size} filters, largest norm first\n"
              f"({what}; each tile scaled to its largest |w|, red > 0 > blue)", path, tile_inches=1.1,
              cmap=KERNEL_CMAP, vmin=-1, vmax=1)


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Row order that puts correlated rows next to each other (average-linkage clustering, leaf order).

    Rows are centred and scaled to unit length first, so the Euclidean distance ranks them as correlation
    does, and a constant row (a dead channel) is a zero vector instead of an undefined correlation."""
    if len(matrix) < 3:
        return np.arange(len(matrix))
    centred = matrix - matrix.mean(axis=1, keepdims=True)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    return leaves_list(linkage(unit, method="average", metric="euclidean"))


def plot_kernels_1x1(conv: nn.Conv2d, name: str, path: str | Path) -> None:
    matrix = conv.weight.detach().float().cpu().numpy()[:, :, 0, 0]
    ordered = matrix[cluster_order(matrix)][:, cluster_order(matrix.T)]
    limit = max(float(np.percentile(np.abs(ordered), MATRIX_CLIP_PERCENTILE)), 1e-12)
    fig, ax = plt.subplots(figsize=(9, 6))
    image = ax.imshow(ordered, cmap=KERNEL_CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="antialiased")
    ax.set_xlabel(f"input channel ({matrix.shape[1]}, clustered order)")
    ax.set_ylabel(f"output channel ({matrix.shape[0]}, clustered order)")
    ax.set_title(f"{name}: 1×1 filters as an output × input matrix")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label=f"weight (clipped at the {MATRIX_CLIP_PERCENTILE}th pct)")
    fig.tight_layout()
    write_figure(fig, path, DPI)


def write_kernel_pictures(model: nn.Module, out: ExplainDir) -> list[Path]:
    """The 3×3 kernels' picture and (when the last block has a 1×1 convolution) the 1×1 kernels' picture."""
    plots = {"3x3": plot_kernels_3x3, "1x1": plot_kernels_1x1}
    written = []
    for kind, (name, conv) in kernel_layers(model).items():
        path = out.kernels(kind)
        plots[kind](conv, name, path)
        written.append(path)
    return written

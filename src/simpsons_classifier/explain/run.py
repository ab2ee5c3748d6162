"""``simpsons explain``: every explanation picture of a run, written to ``RUN/explain/``.

Without ``images``: Grad-CAM of one validation image per class, of the most-confused pairs (the mistaken image
and an image of the class it was taken for, each with the CAM of both classes), and feature maps of a few
validation images. With ``images``: Grad-CAM of the predicted class for each file and feature maps of the first
few, in ``RUN/explain/images/``. The kernel pictures come either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..augment import build_eval_transform
from ..data.images import check_image, load_rgb
from ..data.run_data import RunData
from ..evaluation import ensure_evaluated
from ..run_dir import ExplainDir, RunDir
from ..storage import check_writable
from ..tables import read_rows
from ..training import LoadedModel, load_model
from .feature_maps import feature_maps, plot_feature_maps
from .figures import tile_grid
from .gradcam import gradcam, overlay
from .kernels import write_kernel_pictures

CONFUSED_PAIRS_SHOWN = 10
FEATURE_MAP_IMAGES = 3
CAM_BATCH = 16
CLASS_GRID_COLUMNS = 10


def explain_run(run_dir: str | Path | RunDir, images: list[str] | None = None) -> list[Path]:
    """Write the pictures; returns their paths. A folder that cannot take them (full disk, no permission) is
    refused before the model runs."""
    run = RunDir(run_dir)
    out = run.explain_dir.make()
    check_writable(out.path)
    loaded = load_model(run)
    written = write_kernel_pictures(loaded.model, out)
    if images:
        return written + _explain_files(loaded, _image_files(images), out.images.make())
    return written + _explain_validation(loaded, run, out)


def prepare(paths: list[str], loaded: LoadedModel) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The model's input batch and, pixel for pixel, the same crops as uint8 RGB pictures."""
    transform = build_eval_transform(loaded.config.image_size, loaded.mean, loaded.std)
    batch = torch.stack([transform(load_rgb(p)) for p in paths])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (loaded.mean, loaded.std))
    pixels = ((batch * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return batch, list(pixels.permute(0, 2, 3, 1).numpy())


def _probabilities(loaded: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([loaded.model(chunk).softmax(dim=1) for chunk in batch.split(CAM_BATCH)])


def _cams(loaded: LoadedModel, batch: torch.Tensor, classes: list[int]) -> np.ndarray:
    return np.concatenate([gradcam(loaded.model, batch[i : i + CAM_BATCH], classes[i : i + CAM_BATCH])
                           for i in range(0, len(batch), CAM_BATCH)])


def _explain_files(loaded: LoadedModel, paths: list[str], out: ExplainDir) -> list[Path]:
    batch, pictures = prepare(paths, loaded)
    probabilities = _probabilities(loaded, batch)
    predicted = probabilities.argmax(dim=1).tolist()
    cams = _cams(loaded, batch, predicted)
    path = out.gradcam_files
    tile_grid([overlay(p, c) for p, c in zip(pictures, cams)],
              [f"{Path(f).name}\n{loaded.classes[y]} {probabilities[i, y]:.2f}" for i, (f, y) in
               enumerate(zip(paths, predicted))],
              CLASS_GRID_COLUMNS, "Grad-CAM of the predicted class", path)
    shown = slice(0, FEATURE_MAP_IMAGES)
    names = [f"{i:02d}_{Path(f).stem}" for i, f in enumerate(paths[shown], start=1)]
    return [path, *_write_feature_maps(loaded, batch[shown], pictures[shown], names, out)]


def _explain_validation(loaded: LoadedModel, run: RunDir, out: ExplainDir) -> list[Path]:
    """The class grid is written last: the report dates the explanation by it, so pictures stopped halfway (a full
    disk) are made again rather than taken for complete ones."""
    for stale in out.pairs():
        stale.unlink()
    first_per_class: dict[str, str] = {}
    for sample in RunData.read(run).split.val:
        first_per_class.setdefault(sample.label, sample.path)
    labels = [c for c in loaded.classes if c in first_per_class]
    batch, pictures = prepare([first_per_class[c] for c in labels], loaded)
    probabilities = _probabilities(loaded, batch)
    targets = [loaded.classes.index(c) for c in labels]
    cams = _cams(loaded, batch, targets)
    titles = []
    for i, (label, target) in enumerate(zip(labels, targets)):
        guess = int(probabilities[i].argmax())
        verdict = "right" if guess == target else f"→ {loaded.classes[guess]}"
        titles.append(f"{label}\n{verdict} ({probabilities[i, guess]:.2f})")
    shown = np.linspace(0, len(labels) - 1, min(FEATURE_MAP_IMAGES, len(labels))).round().astype(int)
    maps = _write_feature_maps(loaded, batch[shown], [pictures[i] for i in shown], [labels[i] for i in shown], out)
    pairs = _write_confused_pairs(loaded, run, out)
    classes_path = out.gradcam_classes
    tile_grid([overlay(p, c) for p, c in zip(pictures, cams)], titles, CLASS_GRID_COLUMNS,
              "Grad-CAM of the true class, one validation image per class (title: the model's answer)",
              classes_path)
    return [classes_path, *maps, *pairs]


def _write_feature_maps(
    loaded: LoadedModel, batch: torch.Tensor, pictures: list[np.ndarray], names: list[str], out: ExplainDir
) -> list[Path]:
    written = []
    for maps, picture, name in zip(feature_maps(loaded.model, batch), pictures, names):
        path = out.feature_maps(name)
        plot_feature_maps(picture, maps, name, path)
        written.append(path)
    return written


def _write_confused_pairs(loaded: LoadedModel, run: RunDir, out: ExplainDir) -> list[Path]:
    """For each pair (true A taken for B): A's most confident such mistake and B's clearest image, each with
    the CAM of A and of B, so one sees what looked like B."""
    evaluated = ensure_evaluated(run)
    predictions = read_rows(evaluated.predictions)
    written = []
    for number, pair in enumerate(read_rows(evaluated.confused_pairs)[:CONFUSED_PAIRS_SHOWN], start=1):
        true, predicted = pair["true"], pair["predicted"]
        mistake = max((r for r in predictions if r["true"] == true and r["predicted"] == predicted),
                      key=lambda r: float(r["probability"]))
        rows = [mistake]
        others = [r for r in predictions if r["true"] == predicted]
        if others:
            rows.append(max(others, key=lambda r: float(r["true_probability"])))
        batch, pictures = prepare([r["path"] for r in rows], loaded)
        a, b = loaded.classes.index(true), loaded.classes.index(predicted)
        cams = _cams(loaded, batch.repeat_interleave(2, dim=0), [a, b] * len(rows))
        tiles, titles = [], []
        for i, (row, picture) in enumerate(zip(rows, pictures)):
            tiles += [picture, overlay(picture, cams[2 * i]), overlay(picture, cams[2 * i + 1])]
            titles += [f"{Path(row['path']).name}: true {row['true']}\npredicted {row['predicted']} "
                       f"({float(row['probability']):.2f})", f"CAM for {true}", f"CAM for {predicted}"]
        path = out.pair(number)
        tile_grid(tiles, titles, 3, f"{true} taken for {predicted} ({pair['count']}×)", path, tile_inches=2.4)
        written.append(path)
    return written


def _image_files(paths: list[str]) -> list[str]:
    """Files as given; folders are scanned for images (any depth, judged by content)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += [str(f) for f in sorted(path.rglob("*")) if f.is_file() and check_image(f) is None]
        elif path.is_file():
            files.append(str(path))
        else:
            raise FileNotFoundError(f"--images {path}: no such file or folder")
    return files

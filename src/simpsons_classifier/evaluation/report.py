"""The evaluation files of a run, computed from logits and targets with scikit-learn."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ..data.split import source_group
from ..run_dir import EvalDir
from ..storage import write_figure
from ..tables import write_rows
from ..training.validate import score_sums, scores_from_sums
from .results import EvalResult, OpenSetFigures

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MOST_CONFUSED_PAIRS = 20
CONFUSION_DPI = 110


def write_evaluation(
    logits: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str],
    out: EvalDir,
    paths: list[str] | None = None,
    **extra,
) -> EvalResult:
    """Score ``logits`` against ``targets`` and write metrics.json, per_class.csv, confusion_matrix.csv/.png and
    confused_pairs.csv to ``out``; ``extra`` are further :class:`EvalResult` fields (robustness, open-set...).

    With the images' ``paths``: also predictions.csv (one row per image) and, when file names carry a source
    group (``SOURCE__i.png``), per_group.csv: accuracy per drawing source, which a pooled number hides.

    Each file is written atomically, predictions.csv last: it is what ``ensure_evaluated`` dates the evaluation
    by, so an evaluation stopped halfway by a full disk is not taken for a complete one."""
    out.make()
    y_true = targets.numpy()
    y_pred = logits.argmax(dim=1).numpy() if len(targets) else np.empty(0, dtype=int)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    present = support > 0
    if paths is not None and any("__" in Path(p).name for p in paths):
        extra["per_group_top1"] = per_group_accuracy(paths, y_true == y_pred)
        write_rows(out.per_group, ["group", "images", "top1"],
                   [[g, n, f"{a:.4f}"] for g, (n, a) in extra["per_group_top1"].items()])
    result = EvalResult(
        **scores_from_sums(score_sums(logits, targets)),
        num_images=int(len(targets)),
        num_classes=len(classes),
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        **extra,
    )
    result.write(out.metrics)
    write_rows(
        out.per_class,
        ["class", "precision", "recall", "f1", "support"],
        [[c, f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", int(s)] for c, p, r, f, s in zip(classes, precision, recall, f1, support)],
    )
    write_rows(out.confusion_csv, ["true \\ predicted", *classes],
               [[c, *row] for c, row in zip(classes, matrix.tolist())])
    write_rows(out.confused_pairs, ["true", "predicted", "count", "fraction_of_true"],
               confused_pairs(matrix, classes))
    plot_confusion_matrix(matrix, classes, out.confusion_png)
    if paths is not None:
        probabilities = logits.softmax(dim=1)
        write_rows(out.predictions, ["path", "true", "predicted", "probability", "true_probability"],
                   [[p, classes[t], classes[y], f"{probabilities[i, y]:.4f}", f"{probabilities[i, t]:.4f}"]
                    for i, (p, t, y) in enumerate(zip(paths, y_true, y_pred))])
    return result


def per_group_accuracy(paths: list[str], correct: np.ndarray) -> dict[str, tuple[int, float]]:
    """Source group -> (images, top-1), largest group first."""
    groups = np.array([source_group(p) for p in paths])
    result = {g: (int((groups == g).sum()), float(correct[groups == g].mean())) for g in set(groups)}
    return dict(sorted(result.items(), key=lambda item: -item[1][0]))


def confused_pairs(matrix: np.ndarray, classes: list[str], top: int = MOST_CONFUSED_PAIRS) -> list[list]:
    """The largest off-diagonal cells, each direction on its own row (A taken for B and B taken for A)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    rows = []
    for flat in order:
        true, pred = np.unravel_index(flat, off.shape)
        if off[true, pred] == 0:
            break
        rows.append([classes[true], classes[pred], int(off[true, pred]), f"{off[true, pred] / matrix[true].sum():.3f}"])
    return rows


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: str | Path) -> None:
    """Row-normalised (recall per class) so rare and common classes read alike; counts written in the cells."""
    n = len(classes)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = max(6.0, 0.28 * n + 3)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_yticks(range(n), classes, fontsize=7 if n > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for true, pred in zip(*np.nonzero(matrix)):
        colour = "white" if normalised[true, pred] > 0.5 else "black"
        ax.text(pred, true, str(matrix[true, pred]), ha="center", va="center", fontsize=6 if n > 20 else 8, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="fraction of the true class")
    ax.set_title(f"confusion matrix ({int(matrix.sum())} images)")
    fig.tight_layout()
    write_figure(fig, path, CONFUSION_DPI)


def plot_openset_scores(values: dict[str, list[float]], figures: OpenSetFigures, path: str | Path) -> None:
    """The chosen unknown-character score of known validation images against near (held-out characters) and far
    (photos, noise...) images, with the threshold: how much of each side it lets through is read off the picture."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    present = {name: np.asarray(v) for name, v in values.items() if len(v)}
    edges = np.histogram_bin_edges(np.concatenate(list(present.values())), bins=40)
    colours = {"known": "tab:blue", "near": "tab:orange", "far": "tab:grey"}
    auroc = {"near": figures.near, "far": figures.far}
    for name, v in present.items():
        label = f"{name} ({len(v)})"
        if name in auroc and figures.chosen in auroc[name]:
            label += f", AUROC {auroc[name][figures.chosen].auroc:.3f}"
        ax.hist(v, bins=edges, alpha=0.5, density=True, color=colours.get(name), label=label)
    ax.axvline(figures.threshold, color="black", linestyle="--", label=f"threshold {figures.threshold:.3g}")
    ax.set_xlabel(f"{figures.chosen} (higher: more like a known character)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title("unknown-character score")
    fig.tight_layout()
    write_figure(fig, path, CONFUSION_DPI)

"""``RUN/metrics.csv`` (one row per epoch) and its picture ``RUN/curves.png``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..storage import write_figure, write_text_atomic  # noqa: E402

COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "val_top1", "val_top5", "seconds")
UNLABELED_COLUMNS = ("unlabeled_used", "unlabeled_rejected", "unlabeled_pending")
"""A semi-supervised run's further columns: the epoch's unlabelled images pseudo-labelled (trained on), rejected as
unknown characters, and below the confidence threshold. Its ``train_loss`` includes the weighted unlabelled loss."""
COUNT_COLUMNS = ("epoch", *UNLABELED_COLUMNS)
CURVES_DPI = 100
PROBE_EPOCH = -1
"""The ``epoch`` of the row that scores the starting head before fine-tuning: the probe head, or the head grown
from ``init_run`` (drawn as epoch 0; no training loss). The final weight ensemble (``wise_alpha``), when the run
makes one, is the row ``epoch == epochs``, also without a training loss."""


def best_checkpoint_name(rows: list[dict[str, float]], epochs: int) -> str:
    """What ``best.pt`` holds, in words: the first row with the highest top-1, as training keeps it."""
    if not rows:
        return "?"
    epoch = int(max(rows, key=lambda r: r["val_top1"])["epoch"])
    if epoch == PROBE_EPOCH:
        return "the starting head (epoch 0)"
    if epoch == epochs:
        return "the final weight ensemble"
    return f"epoch {epoch + 1}"


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def write_metrics(path: str | Path, rows: list[dict[str, float]]) -> None:
    """The rows, with :data:`UNLABELED_COLUMNS` when every row has them (a semi-supervised run)."""
    columns = COLUMNS + UNLABELED_COLUMNS if rows and all(UNLABELED_COLUMNS[0] in r for r in rows) else COLUMNS
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: int(row[k]) if k in COUNT_COLUMNS else f"{row[k]:.6g}" for k in columns})
    write_text_atomic(path, text.getvalue())


def plot_curves(rows: list[dict[str, float]], path: str | Path, epochs: int) -> None:
    """Losses on the left, validation accuracy on the right, learning rate as a dotted line; epochs counted from
    1, the starting head (probe or grown, when there is one) as epoch 0 and the final weight ensemble, when there
    is one, as epoch ``epochs + 1``, named."""
    drawn_at = [int(r["epoch"]) + 1 for r in rows]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(drawn_at, [r["train_loss"] for r in rows], "o-", label="train loss (augmented)")
    loss_ax.plot(drawn_at, [r["val_loss"] for r in rows], "o-", label="validation loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.legend()
    acc_ax.plot(drawn_at, [100 * r["val_top1"] for r in rows], "o-", label="top-1")
    acc_ax.plot(drawn_at, [100 * r["val_top5"] for r in rows], "o-", label="top-5")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation accuracy (%)")
    acc_ax.set_ylim(0, 100)
    for row in rows:
        if row["epoch"] == epochs:
            for ax, y in ((loss_ax, row["val_loss"]), (acc_ax, 100 * row["val_top1"])):
                ax.annotate("weight ensemble", (epochs + 1, y), textcoords="offset points", xytext=(-6, 5),
                            ha="right", va="bottom", fontsize=8)
    acc_ax.legend(loc="lower right")
    lr_ax = acc_ax.twinx()
    lr_ax.plot(drawn_at, [r["lr"] for r in rows], ":", color="grey")
    lr_ax.set_ylabel("head learning rate", color="grey")
    top = max(r["lr"] for r in rows)
    lr_ax.set_ylim(0, 1.1 * top if top > 0 else 1)  # from zero, so a constant rate reads as constant
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(fig, path, CURVES_DPI)

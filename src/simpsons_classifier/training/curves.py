"""``RUN/metrics.csv`` (one row per epoch) and its picture ``RUN/curves.png``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


@dataclass(frozen=True)
class UnlabeledEpoch:
    """One training epoch's unlabelled draws of a semi-supervised run: pseudo-labelled and trained on (``used``),
    rejected as unknown characters, and pending (below the confidence bar); ``epoch`` counted from 1."""

    epoch: int
    used: int
    rejected: int
    pending: int

    @property
    def drawn(self) -> int:
        return self.used + self.rejected + self.pending

    def share(self, count: int) -> float:
        """``count`` as a share of the epoch's draws."""
        return count / self.drawn if self.drawn else 0.0


def unlabeled_epochs(rows: list[dict[str, float]], epochs: int) -> list[UnlabeledEpoch]:
    """The unlabelled draws of each training epoch; none for a run without an unlabelled folder. The starting head's
    row and the weight ensemble's draw nothing and are left out."""
    return [UnlabeledEpoch(int(r["epoch"]) + 1, *(int(r[c]) for c in UNLABELED_COLUMNS)) for r in rows
            if all(c in r for c in UNLABELED_COLUMNS) and r["epoch"] not in (PROBE_EPOCH, epochs)]


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
    """Losses on the left, validation accuracy in the middle, learning rate as a dotted line; epochs counted from
    1, the starting head (probe or grown, when there is one) as epoch 0 and the final weight ensemble, when there
    is one, as epoch ``epochs + 1``, named. A semi-supervised run gets a third panel: each epoch's unlabelled draws,
    used, rejected as unknown and pending, stacked."""
    drawn_at = [int(r["epoch"]) + 1 for r in rows]
    unlabeled = unlabeled_epochs(rows, epochs)
    fig, axes = plt.subplots(1, 3 if unlabeled else 2, figsize=(16 if unlabeled else 11, 4))
    loss_ax, acc_ax = axes[:2]
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
    if unlabeled:
        _plot_unlabeled(axes[2], unlabeled)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.tight_layout()
    write_figure(fig, path, CURVES_DPI)


def _plot_unlabeled(ax, unlabeled: list[UnlabeledEpoch]) -> None:
    at = [e.epoch for e in unlabeled]
    bottom = [0] * len(unlabeled)
    for name, label, colour in (("used", "pseudo-labelled", "tab:green"), ("rejected", "rejected as unknown", "tab:red"),
                                ("pending", "pending (below the bar)", "tab:grey")):
        counts = [getattr(e, name) for e in unlabeled]
        ax.bar(at, counts, bottom=bottom, label=label, color=colour)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xlabel("epoch")
    ax.set_ylabel("unlabelled images drawn")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)  # above the bars
    ax.grid(alpha=0.3, axis="y")

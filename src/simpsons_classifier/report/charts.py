"""The report's own picture: images per class, split into training and validation."""

from __future__ import annotations

import io
from collections import Counter

import matplotlib

from ..data.split import Split

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def class_counts_png(classes: list[str], split: Split) -> bytes:
    """Stacked bars per class (training below, validation above), as PNG bytes."""
    train, val = Counter(s.label for s in split.train), Counter(s.label for s in split.val)
    positions = range(len(classes))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(classes) + 2), 3.6))
    ax.bar(positions, [train[c] for c in classes], label="training")
    ax.bar(positions, [val[c] for c in classes], bottom=[train[c] for c in classes], label="validation")
    ax.set_xticks(list(positions), classes, rotation=90, fontsize=7 if len(classes) > 20 else 9)
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set_ylabel("images")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()

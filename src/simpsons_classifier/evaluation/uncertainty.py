"""How far a figure measured on a few hundred validation images can be trusted, and whether two runs really differ.

A top-1 of 84 % on 150 images could as well be 77 % or 89 % on another draw of 150: the report and ``evaluate``
show the Wilson interval beside it (better than the normal approximation near 0 and 100 % and on small sets;
scipy's). Two runs on the same images are compared image by image (McNemar's exact test): only the images one
gets right and the other wrong count, which tells a real gain from a lucky split far better than two overlapping
intervals do.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIDENCE = 0.95


def share_interval(share: float, images: int) -> tuple[float, float]:
    """The ``CONFIDENCE`` Wilson interval of a share (top-1, say) measured on ``images`` images."""
    from scipy.stats import binomtest

    if images <= 0:
        return 0.0, 1.0
    interval = binomtest(round(share * images), images).proportion_ci(CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def format_interval(interval: tuple[float, float]) -> str:
    """``77.4–88.9 %``."""
    return f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f} %"


@dataclass(frozen=True)
class PairedDifference:
    """Two runs on the same images: the images only the second gets right (``won``), only the first (``lost``),
    and McNemar's exact two-sided p-value, the chance of a split at least this uneven if neither run were better."""

    won: int
    lost: int
    p_value: float

    def describe(self) -> str:
        """``+7 / −1 images, p = 0.07``."""
        return f"+{self.won} / −{self.lost} images, p = {self.p_value:.2g}"


def paired_difference(first_right: dict[str, bool], second_right: dict[str, bool]) -> PairedDifference | None:
    """Compare two runs on the images both were evaluated on (keyed by path); None when they share none."""
    from scipy.stats import binomtest

    shared = first_right.keys() & second_right.keys()
    if not shared:
        return None
    won = sum(second_right[p] and not first_right[p] for p in shared)
    lost = sum(first_right[p] and not second_right[p] for p in shared)
    p_value = binomtest(won, won + lost, 0.5).pvalue if won + lost else 1.0
    return PairedDifference(won, lost, float(p_value))

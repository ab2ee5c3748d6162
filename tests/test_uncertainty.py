"""How far a validation figure can be trusted, and whether two runs on the same images really differ."""

from __future__ import annotations

import pytest

from simpsons_classifier.evaluation import EvalResult
from simpsons_classifier.evaluation.uncertainty import format_interval, paired_difference, share_interval


def test_the_wilson_interval_of_a_share():
    # 84 of 100 right: centre (p + z²/2n) / (1 + z²/n), half-width z √(p(1-p)/n + z²/4n²) / (1 + z²/n), z = 1.96
    assert share_interval(0.84, 100) == pytest.approx((0.7558, 0.8990), abs=2e-4)
    low, high = share_interval(1.0, 20)  # all right on 20 images still leaves room below
    assert 0.8 < low < 0.85 and high == pytest.approx(1.0)
    assert share_interval(0.84, 1000)[1] - share_interval(0.84, 1000)[0] < 0.05  # more images, narrower
    assert share_interval(0.5, 0) == (0.0, 1.0)
    assert format_interval((0.7558, 0.8990)) == "75.6–89.9 %"


def test_an_evaluation_carries_the_interval_of_its_top1_and_of_each_source():
    result = EvalResult(top1=0.84, top5=0.95, loss=0.5, num_images=100, num_classes=5, macro_f1=0.8,
                        balanced_accuracy=0.8, per_group_top1={"icon": (20, 1.0)})
    assert result.top1_interval == share_interval(0.84, 100)
    assert result.group_interval("icon") == share_interval(1.0, 20)


def test_two_runs_are_compared_on_the_images_only_one_gets_right():
    first = {f"{i}.png": i >= 7 for i in range(50)} | {"only-first.png": True}
    second = {f"{i}.png": i != 7 for i in range(50)} | {"only-second.png": False}
    difference = paired_difference(first, second)
    # 0-6 only the second gets right, 7 only the first; the other 42 shared images, and images not shared, do not count
    assert (difference.won, difference.lost) == (7, 1)
    assert difference.p_value == pytest.approx(2 * (1 + 8) / 2 ** 8)  # exact: P(at most 1 of 8 fair coin tosses) x 2
    assert difference.describe() == "+7 / −1 images, p = 0.07"
    assert paired_difference(first, first).p_value == 1.0
    assert paired_difference({"a.png": True}, {"b.png": True}) is None

"""``simpsons ablate`` and ``simpsons compare``: same split for every recipe, one table, resumable."""

from __future__ import annotations

import re

import pytest
from synthetic import tiny_config

from simpsons_classifier.cli import main

pytestmark = pytest.mark.slow


def test_ablate_trains_each_config_on_one_split_and_compare_rebuilds_the_table(tmp_path, dataset, capsys):
    configs = []
    for name, smoothing in (("plain", 0.0), ("smoothed", 0.1)):
        path = tmp_path / f"{name}.yaml"
        tiny_config(label_smoothing=smoothing, epochs=1, unfreeze_epoch=0).save(path)
        configs.append(str(path))
    out = tmp_path / "ablation"
    args = ["ablate", "--data", str(dataset), "--configs", *configs, "--set", "split=group", "--out", str(out)]
    assert main(args) == 0

    plain, smoothed = out / "plain", out / "smoothed"
    assert (plain / "split.csv").read_text() == (smoothed / "split.csv").read_text()
    assert "split: group" in (smoothed / "config.yaml").read_text()
    markdown = (out / "ablation.md").read_text()
    header, rule, *rows = markdown.splitlines()[:4]
    assert header.startswith("| model version | top-1 | 95 % interval | vs plain, image by image | top-5 | loss |")
    assert "key differences" in header
    assert rows[0].startswith("| plain (resnet10t") and rows[0].endswith("label_smoothing=0.0 |")
    assert rows[1].startswith("| smoothed (resnet10t") and rows[1].endswith("label_smoothing=0.1 |")
    first, second = ([cell.strip() for cell in row.split("|")[1:-1]] for row in rows[:2])
    assert first[3] == "–" and re.fullmatch(r"\+\d+ / −\d+ images, p = [\d.e-]+", second[3])
    assert re.fullmatch(r"\d+\.\d–\d+\.\d %", first[2])
    assert "split=group" in markdown  # shared by both runs, listed once under the table
    assert "<td>label_smoothing=0.1</td>" in (out / "ablation.html").read_text()
    assert (plain / "report.html").is_file() and (smoothed / "report.html").is_file()

    trained = (smoothed / "best.pt").stat().st_mtime
    assert main(args) == 0  # a finished ablation is not trained again
    assert (smoothed / "best.pt").stat().st_mtime == trained

    capsys.readouterr()
    assert main(["compare", str(plain), str(smoothed), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "comparison.md").read_text().splitlines()[:4] == markdown.splitlines()[:4]
    assert rows[1] in capsys.readouterr().out

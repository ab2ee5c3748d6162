"""``simpsons train`` ends with ``RUN/report.html``: every explanation picture, for a ResNet and an EfficientNet,
in one self-contained page that Chromium loads with every image decoded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pictures import framed_tiles
from synthetic import make_dataset, tiny_config

from simpsons_classifier.cli import main
from simpsons_classifier.evaluation import EvalResult
from simpsons_classifier.evaluation.uncertainty import format_interval

pytestmark = pytest.mark.slow

CLASSES = 4
SECTIONS = ("config", "dataset", "training", "metrics", "classes", "confusion", "pairs", "losses", "gradcam", "inside")


@pytest.fixture(scope="module", params=["resnet14t", "efficientnet_lite0"])  # resnet14t: Bottleneck blocks (1×1)
def run(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp(request.param)
    data = make_dataset(root / "data", classes=CLASSES)
    config = root / "config.yaml"
    tiny_config(backbone=request.param, image_size=64, epochs=1).save(config)
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--config", str(config)]) == 0
    return root / "run"


def test_train_writes_the_report_and_every_explanation_picture(run):
    explain = run / "explain"
    assert (run / "report.html").is_file()
    rule = json.loads((run / "openset.json").read_text())  # no characters held out: the rule, and how to measure it
    assert (f"<b>{rule['score']}</b> score is below" in (html := (run / "report.html").read_text())
            and "No character was held out of this run" in html and "holdout_classes=K" in html)
    result = EvalResult.read(run / "eval" / "metrics.json")  # top-1 with how far it can be trusted
    assert f"top-1, 95 % interval {format_interval(result.top1_interval)}</span>" in html
    assert (explain / "kernels_3x3.png").is_file() and (explain / "kernels_1x1.png").is_file()
    assert len(framed_tiles(explain / "gradcam_classes.png")) == CLASSES  # one validation image per class
    assert len(list(explain.glob("feature_maps_*.png"))) == 3
    with open(run / "eval" / "confused_pairs.csv") as handle:
        pairs = len(list(csv.DictReader(handle)))
    assert len(list(explain.glob("gradcam_pair_*.png"))) == min(pairs, 10)
    for pair in explain.glob("gradcam_pair_*.png"):
        assert len(framed_tiles(pair)) in (3, 6)  # (image, CAM of true, CAM of predicted) × 1 or 2 images


def test_report_opens_in_chromium_with_every_image_loaded(run, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((run / "report.html").as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.src.slice(0, 11), e.naturalWidth])")
    assert len(images) >= 10
    assert [alt for alt, _, width in images if width == 0] == []
    assert {src for _, src, _ in images} <= {"data:image/"}  # self-contained: nothing fetched from elsewhere
    for section in SECTIONS:
        assert page.locator(f"h2#{section}").count() == 1

    f1 = "#per-class tbody tr td:nth-child(4)"
    ascending = [float(x) for x in page.locator(f1).all_inner_texts()]
    assert ascending == sorted(ascending)
    page.click("#per-class th:nth-child(4)")  # sorted by F1 already: a click reverses it
    assert [float(x) for x in page.locator(f1).all_inner_texts()] == sorted(ascending, reverse=True)

    page.screenshot(path=tmp_path / "report.png", full_page=True)
    width, height = page.evaluate("[document.body.scrollWidth, document.body.scrollHeight]")
    assert width <= 1280 and height > 3000  # no horizontal overflow; a long page with all its sections
    page.close()


def test_explain_given_images(run, tmp_path):
    files = sorted(str(p) for p in (run.parent / "data").rglob("dreamworld__*.png"))
    assert main(["explain", "--run", str(run), "--images", *files]) == 0
    pictures = run / "explain" / "images"
    assert len(framed_tiles(pictures / "gradcam.png")) == len(files)
    assert len(list(pictures.glob("feature_maps_*.png"))) == min(3, len(files))

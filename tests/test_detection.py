"""The detector end to end on a planted toy: two characters (a disc and a bar) composed into scenes, trained
briefly, scored on held-out scenes, and asked where the characters are in a picture it never saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from simpsons_classifier.cli import main
from simpsons_classifier.config import ConfigError
from simpsons_classifier.detection import train as detection_train
from simpsons_classifier.detection.config import DetectConfig
from simpsons_classifier.detection.evaluate import evaluate_detector
from simpsons_classifier.detection.predictor import DetectionPredictor
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.detection.train import resume_detector, train_detector
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.tables import read_rows
from synthetic import draw_character, make_dataset
from tiny_runs import train_tiny_run

TOY = dict(scene_size=128, max_characters=2, scenes_per_epoch=96, epochs=8, batch_size=8, val_scenes=24,
           num_workers=0, lr=2e-3)
PICTURE_SIZE = (160, 120)
BACKGROUND = (90, 140, 90)
TILES = {"000_class0": (0, 10), "001_class1": (60, 15)}
"""The top-left corner of the 100-pixel white tile each character is drawn in; only the character is pasted, at
the size the detector was trained on (a quarter to 0.7 of the scene's side once the picture is scaled to it)."""
TILE_PX = 100


def drawn(class_index: int) -> tuple[Image.Image, Image.Image]:
    """A character's white tile and the mask of the character in it."""
    tile = draw_character(class_index, variant=0, size=TILE_PX)
    return tile, tile.convert("L").point(lambda level: 255 if level < 250 else 0)


def planted_picture() -> Image.Image:
    """Both characters cut out of their white tiles (as the scenes cut them out) on a plain picture."""
    picture = Image.new("RGB", PICTURE_SIZE, BACKGROUND)
    for class_index, corner in enumerate(TILES.values()):
        tile, mask = drawn(class_index)
        picture.paste(tile, corner, mask=mask)
    return picture


def planted_boxes() -> dict[str, tuple[int, int, int, int]]:
    """Each character's true box: its mask's bounding box, moved to its tile's corner."""
    boxes = {}
    for class_index, (label, (left, top)) in enumerate(TILES.items()):
        x1, y1, x2, y2 = drawn(class_index)[1].getbbox()
        boxes[label] = (left + x1, top + y1, left + x2, top + y2)
    return boxes


def overlap(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    data = make_dataset(root / "data", classes=2, per_source=2)
    return train_detector(DetectConfig.from_dict(TOY), data, root / "run", progress=False).path


@pytest.mark.slow
def test_a_detector_trained_briefly_on_a_planted_toy_finds_the_planted_characters(toy_run):
    evaluation = evaluate_detector(toy_run, progress=False)
    assert evaluation.num_scenes == TOY["val_scenes"]
    assert evaluation.map50 >= 0.8, evaluation
    assert set(evaluation.per_class_ap) == set(TILES)
    detections = DetectionPredictor.from_run(toy_run).detect([planted_picture()], min_score=0.3)[0]
    for label, box in planted_boxes().items():
        best = max((overlap(d.box, box) for d in detections if d.label == label), default=0.0)
        assert best >= 0.5, (label, detections)


@pytest.mark.slow
def test_detect_evaluate_writes_the_scores_other_tools_read(toy_run, capsys):
    assert main(["detect", "evaluate", "--run", str(toy_run)]) == 0
    scores = json.loads(RunDir(toy_run).eval_dir().detection.read_text())
    assert {"map50", "map", "per_class_ap", "num_scenes"} <= set(scores)
    assert 0 <= scores["map"] <= scores["map50"] <= 1
    assert "mAP@.5" in capsys.readouterr().out
    assert RunDir(toy_run).eval_dir().detections.is_file()


@pytest.mark.slow
def test_detect_predict_prints_boxes_in_image_pixels_names_unreadable_files_and_draws(toy_run, tmp_path, capsys):
    planted_picture().save(tmp_path / "planted.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    drawn = tmp_path / "drawn"
    status = main(["detect", "predict", "--run", str(toy_run), "--format", "json", "--draw", str(drawn),
                   str(tmp_path / "planted.png"), str(tmp_path / "broken.png")])
    assert status == 0
    results = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert "not a readable image" in results["broken.png"]["error"]
    found = results["planted.png"]["detections"]
    assert {d["label"] for d in found} >= set(TILES)
    width, height = PICTURE_SIZE
    for d in found:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height  # the picture's own pixels, not the scene's
    assert max(d["box"][2] for d in found) > 128  # a box past the 128-pixel scene's edge: mapped back
    assert Image.open(drawn / "planted.png").size == PICTURE_SIZE


@pytest.mark.slow
def test_a_detector_run_stopped_after_an_epoch_resumes_at_the_next(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=2, per_source=1)
    config = DetectConfig.from_dict(TOY | dict(scene_size=64, scenes_per_epoch=8, epochs=2, val_scenes=4))
    original = detection_train._train_one_epoch
    epochs_run = []

    def stop_in_the_second_epoch(detector, optimizer, schedule, loader, desc, progress):
        epochs_run.append(desc)
        if len(epochs_run) == 2:
            raise KeyboardInterrupt
        return original(detector, optimizer, schedule, loader, desc, progress)

    monkeypatch.setattr(detection_train, "_train_one_epoch", stop_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_detector(config, data, tmp_path / "run", progress=False)
    first = read_rows(RunDir(tmp_path / "run").detector.metrics)
    assert [row["epoch"] for row in first] == ["0"]
    with pytest.raises(FileExistsError, match="--resume"):
        train_detector(config, data, tmp_path / "run", progress=False)
    monkeypatch.setattr(detection_train, "_train_one_epoch", original)
    resume_detector(tmp_path / "run", progress=False)
    rows = read_rows(RunDir(tmp_path / "run").detector.metrics)
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0] == first[0]


@pytest.mark.slow
def test_a_detector_trained_into_a_classifier_run_keeps_its_split_and_starts_from_its_backbone(tmp_path, capsys):
    run = train_tiny_run(tmp_path, classes=2)
    split_before = RunDir(run).split.read_text()
    config = DetectConfig.from_dict(dict(backbone="resnet10t", weights="none", scene_size=64, scenes_per_epoch=8,
                                         epochs=1, val_scenes=4, num_workers=0))
    train_detector(config, tmp_path / "data", run, progress=False)
    assert "from the classifier in" in capsys.readouterr().out
    assert RunDir(run).split.read_text() == split_before
    assert DetectionPredictor.from_run(run).classes == json.loads(RunDir(run).dataset.read_text())["classes"]


def test_detector_config_keys_are_checked_by_name(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'scene_size'"):
        DetectConfig.load(overrides=["scene_sise=256"])
    with pytest.raises(ConfigError, match="held_out_backgrounds"):
        DetectConfig.load(overrides=["held_out_backgrounds=1.5"])
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no detector"):
        DetectionPredictor.from_run(tmp_path / "run")
    assert main(["detect", "train", "--out", str(tmp_path / "run")]) == 2


@pytest.mark.slow
def test_real_boxes_train_beside_the_scenes_but_never_those_on_validation_images(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", classes=2, per_source=1)
    images = sorted(data.glob("*/*.png"))
    lines = [f"./characters/{p.parent.name}/{p.name},8,8,40,40,{p.parent.name}" for p in images]
    lines.append(f"./characters/{images[0].parent.name}/{images[0].name},30,8,20,40,{images[0].parent.name}")
    (tmp_path / "annotation.txt").write_text("\n".join(lines) + "\n")
    status = main(["detect", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--boxes",
                   str(tmp_path / "annotation.txt"), "--set", "scene_size=64", "--set", "scenes_per_epoch=8",
                   "--set", "epochs=1", "--set", "val_scenes=4", "--set", "num_workers=0"])
    assert status == 0
    rejected = read_rows(RunDir(tmp_path / "run").detector.rejected_boxes)
    validation = {Path(s.path).relative_to(data).as_posix() for s in RunData.read(tmp_path / "run").split.val}
    left_out = {row["where"]: row["reason"] for row in rejected}
    assert f"annotation.txt:{len(lines)}" in left_out and "x2" in left_out[f"annotation.txt:{len(lines)}"]
    line_images = [p.relative_to(data).as_posix() for p in images]
    on_validation = {line_images[int(where.split(":")[1]) - 1] for where, reason in left_out.items()
                     if "validation image" in reason}
    assert on_validation == validation
    assert f"real boxes: {len(images) - len(validation)} images" in capsys.readouterr().out

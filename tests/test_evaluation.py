import csv
import json
import shutil

import pytest
import torch
from PIL import Image
from synthetic import tiny_config

from simpsons_classifier.cli import main
from simpsons_classifier.evaluation.report import write_report

CLASSES = ["bart", "homer", "lisa"]


def _logits_for(predictions):
    return torch.nn.functional.one_hot(torch.tensor(predictions), len(CLASSES)).float() * 5


def test_report_metrics_per_class_and_confused_pairs_in_both_directions(tmp_path):
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = [0, 0, 1, 1, 1, 1, 0, 2, 2, 2]  # bart->homer twice, homer->bart once
    metrics = write_report(_logits_for(predicted), targets, CLASSES, tmp_path)
    assert metrics["top1"] == pytest.approx(0.7) and metrics["num_images"] == 10 and metrics["num_classes"] == 3
    assert metrics["top5"] == 1.0 and metrics["loss"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["top1"] == pytest.approx(0.7)
    with open(tmp_path / "per_class.csv") as handle:
        per_class = {row["class"]: row for row in csv.DictReader(handle)}
    assert float(per_class["bart"]["recall"]) == pytest.approx(0.5)
    assert float(per_class["homer"]["precision"]) == pytest.approx(0.5)
    assert int(per_class["lisa"]["support"]) == 3 and float(per_class["lisa"]["f1"]) == 1.0
    with open(tmp_path / "confused_pairs.csv") as handle:
        pairs = [(r["true"], r["predicted"], int(r["count"])) for r in csv.DictReader(handle)]
    assert pairs == [("bart", "homer", 2), ("homer", "bart", 1)]
    with open(tmp_path / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == CLASSES and rows[1] == ["bart", "2", "2", "0"]
    image = Image.open(tmp_path / "confusion_matrix.png")
    assert image.size[0] >= 600 and image.size[1] >= 600


def test_train_then_evaluate_another_folder_from_the_command_line(tmp_path, dataset, capsys):
    config = tmp_path / "tiny.yaml"
    tiny_config(epochs=1).save(config)
    assert main(["train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and (tmp_path / "run" / "eval" / "confusion_matrix.png").is_file()

    flat = tmp_path / "testset"
    flat.mkdir()
    for i, path in enumerate(sorted(dataset.glob("*/dreamworld__0.png"))):
        shutil.copy(path, flat / f"{path.parent.name}_{i}.png")
    (flat / "unknown_character_3.png").write_bytes((flat / f"{path.parent.name}_{i}.png").read_bytes())
    (flat / "broken_1.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "flat-eval"
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(flat), "--labels-from-filenames",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 4 and metrics["num_skipped"] == 2
    skipped = (out / "skipped.csv").read_text()
    assert "not one the model knows" in skipped and "broken_1.png" in skipped


def test_command_line_errors_are_clear_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "lr=fast"]) == 2
    assert "lr must be float" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err

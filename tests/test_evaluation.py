import csv
import json
import shutil

import pytest
import torch
from PIL import Image
from synthetic import tiny_config

from simpsons_classifier.cli import main
from simpsons_classifier.evaluation import write_evaluation
from simpsons_classifier.run_dir import EvalDir

CLASSES = ["bart", "homer", "lisa"]


def _logits_for(predictions):
    return torch.nn.functional.one_hot(torch.tensor(predictions), len(CLASSES)).float() * 5


def test_report_metrics_per_class_and_confused_pairs_in_both_directions(tmp_path):
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = [0, 0, 1, 1, 1, 1, 0, 2, 2, 2]  # bart->homer twice, homer->bart once
    metrics = write_evaluation(_logits_for(predicted), targets, CLASSES, EvalDir(tmp_path))
    assert metrics.top1 == pytest.approx(0.7) and metrics.num_images == 10 and metrics.num_classes == 3
    assert metrics.top5 == 1.0 and metrics.loss > 0
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
    assert (f"2 files left out (unreadable, or of a character the model does not know): {out / 'skipped.csv'}"
            in capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 4 and metrics["num_skipped"] == 2
    skipped = (out / "skipped.csv").read_text()
    assert "not one the model knows" in skipped and "broken_1.png" in skipped

    # Without --out a test folder gets its own folder: the validation split's evaluation, which the report shows,
    # stays as it was.
    validation = (tmp_path / "run" / "eval" / "metrics.json").read_bytes()
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(flat), "--labels-from-filenames"]) == 0
    assert json.loads((tmp_path / "run" / "eval-testset" / "metrics.json").read_text())["num_images"] == 4
    assert (tmp_path / "run" / "eval" / "metrics.json").read_bytes() == validation
    assert f"outputs: {tmp_path / 'run' / 'eval-testset'}/" in capsys.readouterr().out


def test_command_line_errors_are_clear_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "lr=fast"]) == 2
    assert "lr must be float" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "nothing")]) == 2
    assert "nothing is not a folder" in capsys.readouterr().err


def test_tta_views_flip_and_zoom_and_average_probabilities():
    from simpsons_classifier.evaluation.tta import TTAModel, tta_views, zoom

    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(zoom(images, 1.0), images)
    views = tta_views(images)
    assert len(views) == 4 and torch.equal(views[1], images.flip(-1))
    assert all(v.shape == images.shape for v in views)

    class LeftBright(torch.nn.Module):
        """Class 0 when the left half is brighter: flipped views disagree with unflipped ones."""

        def forward(self, x):
            left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2 :].mean((1, 2, 3))
            return torch.stack([left - right, right - left], dim=1)

    averaged = TTAModel(LeftBright())(images).exp()
    assert torch.allclose(averaged.sum(1), torch.ones(2))
    assert torch.allclose(averaged, torch.full_like(averaged, 0.5), atol=1e-5)  # a flip cancels the evidence


def test_robustness_backgrounds_are_fixed_and_the_score_is_written(tmp_path, dataset):
    from simpsons_classifier.evaluation import evaluate_run
    from simpsons_classifier.evaluation.robustness import pasting_transform, seeded, unseen_backgrounds
    from simpsons_classifier.training import train

    first, second = unseen_backgrounds(), unseen_backgrounds()
    assert len(first) == 18 and all((a.tobytes() == b.tobytes()) for a, b in zip(first, second))
    sprite = Image.open(next(dataset.glob("*/dreamworld__0.png"))).convert("RGB")
    seeded()
    pasted = pasting_transform(lambda image: image)(sprite)
    assert pasted.getpixel((0, 0)) != (255, 255, 255)  # the white backdrop was replaced
    assert pasted.getpixel((24, 24)) == sprite.getpixel((24, 24))  # the character was kept

    run = train(tiny_config(epochs=1), dataset, tmp_path / "run", progress=False)
    metrics = evaluate_run(run, robustness=True, progress=False)
    again = evaluate_run(run, robustness=True, progress=False)
    assert 0 <= metrics.robustness_top1 <= 1 and metrics.robustness_top1 == again.robustness_top1
    assert json.loads((run / "eval" / "metrics.json").read_text())["robustness_top1"] == metrics.robustness_top1


def test_accuracy_per_drawing_source_when_file_names_carry_a_group(tmp_path):
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 0, 2]
    paths = ["/d/bart/dreamworld__0.png", "/d/bart/gen7x_shiny__0.png", "/d/homer/dreamworld__0.png",
             "/d/homer/gen7x_regular__0.png", "/d/lisa/dreamworld__0.png", "/d/lisa/icon_regular__0.png"]
    metrics = write_evaluation(_logits_for(predicted), targets, CLASSES, EvalDir(tmp_path), paths=paths)
    assert metrics.per_group_top1 == {"dreamworld": (3, pytest.approx(2 / 3)), "gen7x": (2, 0.5), "icon": (1, 1.0)}
    with open(tmp_path / "per_group.csv") as handle:
        rows = {r["group"]: (int(r["images"]), float(r["top1"])) for r in csv.DictReader(handle)}
    assert rows["dreamworld"][0] == 3 and rows["gen7x"] == (2, 0.5)
    with open(tmp_path / "predictions.csv") as handle:
        assert [r["predicted"] for r in csv.DictReader(handle)] == [CLASSES[p] for p in predicted]


def test_no_per_group_file_without_groups_in_the_names(tmp_path):
    metrics = write_evaluation(_logits_for([0, 1]), torch.tensor([0, 1]), CLASSES, EvalDir(tmp_path),
                               paths=["/a/1.png", "/b/2.png"])
    assert metrics.per_group_top1 == {} and not (tmp_path / "per_group.csv").exists()

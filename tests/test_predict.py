import csv
import dataclasses
import io
import json
import shutil

import pytest
import torch
from PIL import Image
from tiny_runs import train_tiny_run

from simpsons_classifier.cli import main
from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData, prepare_run_data, read_heldout
from simpsons_classifier.data.scan import DatasetError
from simpsons_classifier.evaluation import evaluate_run
from simpsons_classifier.evaluation.ood_scores import SCORE_NAMES
from simpsons_classifier.evaluation.openset import OpenSetDetector
from simpsons_classifier.inference.files import find_files, predict_files
from simpsons_classifier.inference.predictor import UNKNOWN, Predictor
from simpsons_classifier.models import FeaturesAndLogits
from simpsons_classifier.run_dir import RunDir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five synthetic characters, one of them held out of training entirely."""
    return train_tiny_run(tmp_path_factory.mktemp("predict"), classes=5, holdout_classes=1)


def test_held_out_classes_never_reach_training_or_validation(run):
    data = RunData.read(run)
    heldout = read_heldout(run)
    (held_class,) = data.summary["heldout_classes"]
    assert held_class not in data.classes and len(data.classes) == 4
    assert heldout and {s.label for s in heldout} == {held_class}
    assert held_class not in {s.label for s in data.split.train + data.split.val}
    assert data.summary["heldout_images"] == len(heldout)
    with open(run / "heldout.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "subset", "group"] and {r["subset"] for r in rows} == {"heldout"}
    assert Predictor.from_run(run).classes == data.classes


def test_the_held_out_classes_depend_on_the_seed_and_at_least_two_stay_known(tmp_path, dataset):
    picks = set()
    for seed in range(4):
        out = tmp_path / f"seed{seed}"
        out.mkdir()
        picks.add(tuple(prepare_run_data(Config(holdout_classes=1, seed=seed), dataset, out, progress=False)
                        .summary["heldout_classes"]))
    assert len(picks) > 1
    with pytest.raises(DatasetError, match="fewer than 2"):
        prepare_run_data(Config(holdout_classes=3), dataset, tmp_path, progress=False)


def test_training_stores_a_rule_and_evaluate_reports_known_against_held_out(run):
    stored = json.loads((run / "openset.json").read_text())
    assert stored["score"] in SCORE_NAMES and stored["val_accepted"] >= 0.95
    metrics = evaluate_run(run, progress=False)
    report = json.loads((run / "eval" / "openset.json").read_text())
    assert dataclasses.asdict(metrics.openset) == report
    assert report["chosen"] == stored["score"] and report["known_accepted"] == pytest.approx(stored["val_accepted"])
    for section in ("near", "far"):
        assert set(report[section]) == set(SCORE_NAMES)
        for numbers in report[section].values():
            assert 0 <= numbers["auroc"] <= 1 and 0 <= numbers["fpr_at_95_tpr"] <= 1
    assert report["near_images"] == len(read_heldout(run))
    assert set(report["far_images"]) == {"photos", "noise"} and min(report["far_images"].values()) > 0
    assert (run / "eval" / "openset_scores.png").is_file()


def test_predict_command_lists_every_file_and_goes_on_past_unreadable_ones(run, tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    val = RunData.read(run).split.val
    for i, sample in enumerate(val[:3]):
        Image.open(sample.path).save(folder / "nested" / f"image{i}.png")
    (folder / "notes.txt").write_text("not an image")
    truncated = io.BytesIO()
    Image.open(val[0].path).save(truncated, format="PNG")
    (folder / "truncated.png").write_bytes(truncated.getvalue()[:-40])
    missing = tmp_path / "missing.png"

    assert main(["predict", "--run", str(run), str(folder), str(missing), "--format", "json", "--top-k", "3"]) == 0
    rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 6
    assert "cannot identify image" in rows[str(folder / "notes.txt")]["error"]
    assert "truncated" in rows[str(folder / "truncated.png")]["error"]
    assert rows[str(missing)]["error"] == "does not exist"
    predictor = Predictor.from_run(run)
    expected = predictor.predict_batch(torch.stack([predictor.load(s.path) for s in val[:3]]), top_k=3)
    for i, prediction in enumerate(expected):
        row = rows[str(folder / "nested" / f"image{i}.png")]
        assert row["error"] is None and [e["label"] for e in row["top_k"]] == [label for label, _ in prediction.top_k]
        probabilities = [e["probability"] for e in row["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
        assert row["prediction"] == prediction.label and row["unknown"] == prediction.unknown

    assert main(["predict", "--run", str(run), str(folder / "nested"), "--format", "csv", "--top-k", "2"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 3 and list(table[0])[-1] == "error" and "probability_2" in table[0]
    assert main(["predict", "--run", str(run), str(folder / "notes.txt")]) == 1  # nothing at all could be read
    assert "UNREADABLE" in capsys.readouterr().out


def test_unknown_follows_the_stored_rule_even_with_tta(run):
    predictor = Predictor.from_run(run)
    samples = RunData.read(run).split.val + read_heldout(run)
    batch = torch.stack([predictor.load(s.path) for s in samples])
    logits, features = FeaturesAndLogits(predictor.model)(batch)
    known = OpenSetDetector.from_run(RunDir(run)).known(features, logits)
    plain = predictor.predict_batch(batch)
    assert [not p.unknown for p in plain] == known.tolist()
    assert all(p.label == UNKNOWN for p in plain if p.unknown)
    predictor.tta = True
    augmented = predictor.predict_batch(batch)
    assert [p.unknown for p in augmented] == [p.unknown for p in plain]
    assert any(abs(a.top_k[0][1] - b.top_k[0][1]) > 1e-4 for a, b in zip(augmented, plain))


def test_a_run_without_the_features_its_rule_is_fitted_on_is_refused_naming_the_file_and_the_fix(run, tmp_path,
                                                                                                  capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "features.pt").unlink()
    image, rule = RunData.read(run).split.val[0].path, json.loads((copy / "openset.json").read_text())

    def predict_with(score: str) -> tuple[int, str]:
        (copy / "openset.json").write_text(json.dumps(rule | {"score": score}))
        return main(["predict", "--run", str(copy), image]), capsys.readouterr().err

    status, errors = predict_with("knn")
    assert status == 2 and (f"error: {copy / 'features.pt'} is missing, and the run's unknown-character score (knn) "
                            f"is fitted on it: `simpsons evaluate --run {copy}` computes it again") in errors
    assert predict_with("max_logit")[0] == 0  # a logit score needs no training features


def test_results_do_not_depend_on_the_batch_size(run):
    predictor = Predictor.from_run(run)
    files = find_files([s.path for s in RunData.read(run).split.val])
    one = list(predict_files(predictor, files, batch_size=3, progress=False))
    many = list(predict_files(predictor, files, batch_size=64, progress=False))
    assert [r.path for r in one] == [str(f) for f in files]
    for a, b in zip(one, many):
        assert a.prediction.top_k[0][0] == b.prediction.top_k[0][0]
        assert a.prediction.top_k[0][1] == pytest.approx(b.prediction.top_k[0][1], abs=1e-5)


def test_folders_are_listed_in_natural_order(tmp_path):
    for name in ["img10.jpg", "img2.jpg", "img1.jpg", "b/img3.jpg", "a10/x.jpg", "a9/x.jpg"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    given = tmp_path / "b" / "img3.jpg"
    assert find_files([tmp_path, given]) == [tmp_path / name for name in [
        "a9/x.jpg", "a10/x.jpg", "b/img3.jpg", "img1.jpg", "img2.jpg", "img10.jpg", "b/img3.jpg"]]


def test_out_writes_the_rows_to_a_file_whole(run, tmp_path, capsys):
    paths = [s.path for s in RunData.read(run).split.val[:3]]
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--run", str(run), *paths, "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    with open(out) as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == paths
    missing = tmp_path / "no_such_folder" / "predictions.csv"
    assert main(["predict", "--run", str(run), *paths, "--out", str(missing)]) == 2
    assert "no_such_folder" in capsys.readouterr().err and not missing.parent.exists()

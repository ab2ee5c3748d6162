import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_runs import train_tiny_run

from simpsons_classifier.cli import main
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference.export import METADATA_FILE, MODEL_FILE, StaleExportError
from simpsons_classifier.inference.predictor import Predictor
from simpsons_classifier.training import checkpoint

PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = train_tiny_run(tmp_path_factory.mktemp("export"))
    assert main(["export", "--run", str(run), "--format", "onnx"]) == 0
    return run


def _probabilities(predictor: Predictor, paths: list[str]) -> np.ndarray:
    """N×C class probabilities, columns in the predictor's class order."""
    predictions = predictor.predict_batch(torch.stack([predictor.load(p) for p in paths]), top_k=len(predictor.classes))
    index = {name: i for i, name in enumerate(predictor.classes)}
    table = np.zeros((len(paths), len(predictor.classes)))
    for row, prediction in enumerate(predictions):
        for label, probability in prediction.top_k:
            table[row, index[label]] = probability
    return table


def test_onnx_matches_pytorch_on_every_validation_image(exported):
    paths = [s.path for s in RunData.read(exported).split.val]
    eager, onnx = Predictor.from_run(exported, "torch"), Predictor.from_run(exported, "onnx")
    assert onnx.classes == eager.classes and onnx.rule == eager.rule
    torch_probabilities, onnx_probabilities = _probabilities(eager, paths), _probabilities(onnx, paths)
    assert len(paths) > 10
    assert (torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).all()
    assert np.abs(torch_probabilities - onnx_probabilities).max() <= PROBABILITY_TOLERANCE


def test_the_export_carries_what_a_user_needs_without_this_package(exported):
    export_dir = exported / "export"
    metadata = json.loads((export_dir / METADATA_FILE).read_text())
    stored_rule = json.loads((exported / "openset.json").read_text())
    assert metadata["openset"] == {"score": stored_rule["score"], "threshold": stored_rule["threshold"]}
    assert metadata["image_size"] == 32 and len(metadata["mean"]) == len(metadata["std"]) == 3
    session = ort.InferenceSession(str(export_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == metadata["input_name"]
    for batch in (1, 5):  # the batch dimension is dynamic
        images = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        (logits,) = session.run([metadata["output_name"]], {model_input.name: images})
        assert logits.shape == (batch, len(metadata["classes"]))


def test_predict_with_the_onnx_backend_from_the_command_line(exported, capsys):
    image = RunData.read(exported).split.val[0].path
    assert main(["predict", "--run", str(exported), image, "--backend", "onnx", "--format", "json"]) == 0
    (onnx_row,) = json.loads(capsys.readouterr().out)
    assert main(["predict", "--run", str(exported), image, "--format", "json"]) == 0
    (torch_row,) = json.loads(capsys.readouterr().out)
    assert onnx_row["prediction"] == torch_row["prediction"] and onnx_row["error"] is None


def test_an_export_older_than_the_checkpoint_or_missing_is_refused(exported, tmp_path):
    payload = checkpoint.read(exported / "best.pt")
    payload["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in payload["model"].items()}
    retrained = tmp_path / "retrained"
    shutil.copytree(exported / "export", retrained / "export")
    for name in ("config.yaml", "openset.json"):
        (retrained / name).write_bytes((exported / name).read_bytes())
    checkpoint.save_atomic(payload, retrained / "best.pt")
    with pytest.raises(StaleExportError, match="simpsons export"):
        Predictor.from_run(retrained, "onnx")
    with pytest.raises(FileNotFoundError, match="simpsons export"):
        Predictor.from_run(exported.parent, "onnx")

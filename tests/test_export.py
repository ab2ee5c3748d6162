import json
import shutil
import warnings
from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_runs import train_tiny_run

from simpsons_classifier.cli import main
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference import quantize
from simpsons_classifier.inference.export import FP32, INPUT_NAME, INT8, ExportMetadata, StaleExportError
from simpsons_classifier.inference.options import ONNX, ONNX_INT8
from simpsons_classifier.inference.predictor import Predictor
from simpsons_classifier.training import checkpoint

pytestmark = pytest.mark.slow  # the shared run trains until it has learned its classes: about a minute

PROBABILITY_TOLERANCE = 1e-4
INT8_AGREEMENT = 0.97
LEARNED_TOP1 = 0.8
"""The tiny run must have learned its classes: agreement between models that both guess means nothing."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny run that has learned its six classes (the whole network trained at a high rate), exported as a
    float and an int8 model."""
    run = train_tiny_run(tmp_path_factory.mktemp("export"), classes=6, epochs=6, lr=3e-3, unfreeze_epoch=0,
                         unfreeze_stage="all", ema_decay=0.0)
    assert main(["export", "--run", str(run), "--format", "onnx", "--int8"]) == 0
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
    eager, onnx = Predictor.from_run(exported, "torch"), Predictor.from_run(exported, ONNX)
    assert onnx.classes == eager.classes and onnx.detector.rule == eager.detector.rule
    torch_probabilities, onnx_probabilities = _probabilities(eager, paths), _probabilities(onnx, paths)
    assert len(paths) > 10
    assert (torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).all()
    assert np.abs(torch_probabilities - onnx_probabilities).max() <= PROBABILITY_TOLERANCE


def test_the_export_carries_what_a_user_needs_without_this_package(exported):
    export_dir = exported / "export"
    metadata = json.loads((export_dir / FP32.metadata_file).read_text())
    stored_rule = json.loads((exported / "openset.json").read_text())
    assert metadata["openset"] == {"score": stored_rule["score"], "threshold": stored_rule["threshold"]}
    assert metadata["image_size"] == 32 and len(metadata["mean"]) == len(metadata["std"]) == 3
    session = ort.InferenceSession(str(export_dir / FP32.model_file), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == metadata["input_name"]
    for batch in (1, 5):  # the batch dimension is dynamic
        images = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        (logits,) = session.run([metadata["output_name"]], {model_input.name: images})
        assert logits.shape == (batch, len(metadata["classes"]))


def test_the_int8_model_is_quantised_and_agrees_with_the_float_model(exported):
    export_dir, data = exported / "export", RunData.read(exported)
    graph = onnx.load(export_dir / INT8.model_file).graph
    operators = Counter(node.op_type for node in graph.node)
    assert operators["QuantizeLinear"] > 0 and operators["DequantizeLinear"] >= operators["Conv"] - 1 > 0
    assert (export_dir / INT8.model_file).stat().st_size < 0.4 * (export_dir / FP32.model_file).stat().st_size
    fp32, int8 = ExportMetadata.read(export_dir, FP32), ExportMetadata.read(export_dir, INT8)
    assert int8.checkpoint_sha256 == fp32.checkpoint_sha256 and int8.classes == fp32.classes
    assert int8.openset == fp32.openset and fp32.quantisation is None
    assert int8.quantisation.calibration_images == len(data.split.train) and int8.quantisation.per_channel
    readers = [node for node in graph.node if fp32.input_name in node.input]  # the image is not re-rounded
    assert [node.op_type for node in readers] == ["Conv"] and int8.quantisation.float_nodes == [readers[0].name]

    paths = [s.path for s in data.split.val]
    labels = np.array([data.classes.index(s.label) for s in data.split.val])
    float_top1 = _probabilities(Predictor.from_run(exported, ONNX), paths).argmax(1)
    int8_top1 = _probabilities(Predictor.from_run(exported, ONNX_INT8), paths).argmax(1)
    assert (float_top1 == labels).mean() >= LEARNED_TOP1 and len(set(float_top1)) == len(data.classes)
    assert (int8_top1 == float_top1).mean() >= INT8_AGREEMENT


@pytest.mark.parametrize("backend", [ONNX, ONNX_INT8])
def test_predict_with_an_onnx_backend_from_the_command_line(exported, capsys, backend):
    image = RunData.read(exported).split.val[0].path
    assert main(["predict", "--run", str(exported), image, "--backend", backend, "--format", "json"]) == 0
    (onnx_row,) = json.loads(capsys.readouterr().out)
    assert main(["predict", "--run", str(exported), image, "--format", "json"]) == 0
    (torch_row,) = json.loads(capsys.readouterr().out)
    assert onnx_row["prediction"] == torch_row["prediction"] and onnx_row["error"] is None


@pytest.fixture
def retrained(exported, tmp_path):
    """A copy of the run whose best.pt changed after the export."""
    payload = checkpoint.read(exported / "best.pt")
    payload["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in payload["model"].items()}
    retrained = tmp_path / "retrained"
    shutil.copytree(exported / "export", retrained / "export")
    for name in ("config.yaml", "openset.json", "features.pt", "dataset.json", "split.csv"):
        (retrained / name).write_bytes((exported / name).read_bytes())
    checkpoint.save_atomic(payload, retrained / "best.pt")
    return retrained


@pytest.mark.parametrize("backend", [ONNX, ONNX_INT8])
def test_an_export_older_than_the_checkpoint_or_missing_is_refused(exported, retrained, backend):
    with pytest.raises(StaleExportError, match="simpsons export"):
        Predictor.from_run(retrained, backend)
    with pytest.raises(FileNotFoundError, match="simpsons export"):
        Predictor.from_run(exported.parent, backend)


def test_a_float_only_export_leaves_the_int8_model_stale(retrained, capsys):
    assert main(["export", "--run", str(retrained), "--format", "onnx"]) == 0
    assert "(input images: N×3×H×W float32; outputs logits and features)" in capsys.readouterr().out
    session = ort.InferenceSession(str(retrained / "export" / "model.onnx"))
    assert [output.name for output in session.get_outputs()] == ["logits", "features"]
    assert Predictor.from_run(retrained, ONNX).classes
    with pytest.raises(StaleExportError, match="--int8"):
        Predictor.from_run(retrained, ONNX_INT8)


def test_too_few_calibration_images_are_refused(exported, capsys):
    assert main(["export", "--run", str(exported), "--int8", "--calibration-images", "0", "--out",
                 str(exported / "unused")]) == 2
    assert "calibration_images must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "saturates"), [("fpu avx2 fma", True), ("avx2 avx512_vnni", False),
                                                  ("avx2 avx_vnni", False), (None, None)])
def test_7bit_weights_are_chosen_exactly_where_the_cpu_can_saturate(exported, tmp_path, monkeypatch, flags,
                                                                    saturates):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n" + (f"flags\t\t: {flags}\n" if flags else "Features\t: fp asimd\n"))
    monkeypatch.setattr(quantize, "CPUINFO", cpuinfo)
    assert quantize.cpu_saturates() is saturates
    images = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    made = quantize.quantize_model(exported / "export" / FP32.model_file, tmp_path / INT8.model_file, INPUT_NAME,
                                   [images])
    assert made.reduce_range is (saturates is not False)  # unknown CPUs get the safe 7-bit weights
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize.warn_if_saturating(replace(made, reduce_range=False), INT8.model_file)
    messages = [str(w.message) for w in caught]
    assert len(messages) == (1 if saturates else 0) and all("simpsons export --int8" in m for m in messages)

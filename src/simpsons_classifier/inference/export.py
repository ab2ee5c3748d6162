"""``RUN/best.pt`` as an ONNX model plus a JSON file with everything needed to use it without this package:
the class names, the preprocessing and the unknown-character rule; optionally also its int8 quantisation beside
it, with its own JSON file.

Each model's metadata records a hash of the checkpoint it came from, so that a model trained further after its
export is noticed instead of silently served stale. The int8 model has its own record because it can fall behind
on its own: an export without ``--int8`` refreshes only the float model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..evaluation.openset import OpenSetRule
from ..models import FeaturesAndLogits
from ..run_dir import RunDir
from ..storage import make_folder, write_json_atomic
from ..training import load_model
from .options import CALIBRATION_IMAGES, ONNX, ONNX_INT8
from .quantize import Quantisation, calibration_batches, quantize_model

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"
"""The second output: the pooled penultimate features, which feature-based unknown-character scores read."""
EXAMPLE_BATCH = 2
"""Batch size of the tracing example; above 1, so the exporter keeps the batch dimension dynamic."""
PREPROCESSING = ("decode to RGB (transparency onto white); resize the shorter side to image_size (bilinear, "
                 "antialiased); centre-crop image_size x image_size; scale to [0, 1]; subtract mean and divide by "
                 "std per channel; NCHW float32. Outputs: logits (softmax gives probabilities) and the pooled "
                 "penultimate features.")
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class OnnxExport:
    """One model of an export folder: its file, the metadata file that vouches for it, and how to make it."""

    backend: str
    model_file: str
    metadata_file: str
    export_options: str
    """What ``simpsons export`` needs to write it."""


FP32 = OnnxExport(ONNX, "model.onnx", "model.json", "--format onnx")
INT8 = OnnxExport(ONNX_INT8, "model.int8.onnx", "model.int8.json", "--format onnx --int8")
ONNX_EXPORTS = {export.backend: export for export in (FP32, INT8)}
"""The exports by the ``--backend`` that runs them."""


class StaleExportError(UserError):
    """An export whose checkpoint has changed since; the message says how to refresh it."""


@dataclass
class ExportMetadata:
    classes: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    backbone: str
    checkpoint_sha256: str
    openset: dict | None
    """``{"score": name, "threshold": t}``: known when the score is >= t. Scores that read more than the logits
    are fitted on the run's ``features.pt`` (see ``evaluation/ood_scores.py``)."""
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    features_name: str = FEATURES_NAME
    preprocessing: str = PREPROCESSING
    quantisation: Quantisation | None = None
    """For an int8 model, how it was quantised and calibrated; None for the float model."""

    @classmethod
    def read(cls, export_dir: str | Path, export: OnnxExport = FP32) -> ExportMetadata:
        values = json.loads((Path(export_dir) / export.metadata_file).read_text())
        quantisation = values.pop("quantisation", None)
        return cls(**values, quantisation=Quantisation(**quantisation) if quantisation else None)

    def write(self, export_dir: Path, export: OnnxExport) -> None:
        write_json_atomic(export_dir / export.metadata_file, asdict(self))


def export_onnx(run_dir: str | Path | RunDir, out_dir: str | Path | None = None, int8: bool = False,
                calibration_images: int = CALIBRATION_IMAGES) -> Path:
    """Write ``model.onnx`` and ``model.json`` to ``out_dir`` (default ``RUN/export``), and with ``int8`` its
    quantisation ``model.int8.onnx`` and ``model.int8.json``, calibrated on ``calibration_images`` of the run's
    training images; returns the folder."""
    if calibration_images < 1:
        raise ValueError(f"calibration_images must be at least 1, got {calibration_images}")
    run_dir = RunDir(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir.export_dir
    make_folder(out_dir)
    loaded = load_model(run_dir)
    size = loaded.config.image_size
    export_model(loaded.model, size, out_dir / FP32.model_file)
    rule = OpenSetRule.read(run_dir.openset)
    metadata = ExportMetadata(
        classes=loaded.classes,
        image_size=size,
        mean=list(loaded.mean),
        std=list(loaded.std),
        backbone=loaded.config.backbone,
        checkpoint_sha256=file_sha256(run_dir.best),
        openset=asdict(rule) if rule else None,
    )
    metadata.write(out_dir, FP32)
    if int8:
        quantisation = quantize_model(out_dir / FP32.model_file, out_dir / INT8.model_file, INPUT_NAME,
                                      calibration_batches(run_dir, loaded, calibration_images))
        replace(metadata, quantisation=quantisation).write(out_dir, INT8)
    return out_dir


def export_model(model: nn.Module, image_size: int, path: str | Path) -> None:
    """``model`` (in eval mode) as one ONNX file: ``images`` N×3×S×S float32 in, ``logits`` and ``features`` out,
    any batch size."""
    torch.onnx.export(
        FeaturesAndLogits(model).eval(),
        (torch.zeros(EXAMPLE_BATCH, 3, image_size, image_size),),
        path,
        dynamo=True,
        verbose=False,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME, FEATURES_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )


def check_fresh(run_dir: str | Path | RunDir, export_dir: str | Path, export: OnnxExport = FP32) -> ExportMetadata:
    """The metadata of ``export`` in ``export_dir``, refused when the run's best.pt is not the checkpoint it was
    made from."""
    run_dir, export_dir = RunDir(run_dir), Path(export_dir)
    command = f"simpsons export --run {run_dir} {export.export_options}"
    if not (export_dir / export.model_file).is_file() or not (export_dir / export.metadata_file).is_file():
        raise FileNotFoundError(f"no {export.model_file} with its {export.metadata_file} in {export_dir}: run  "
                                f"{command}")
    metadata = ExportMetadata.read(export_dir, export)
    if metadata.checkpoint_sha256 != file_sha256(run_dir.best):
        raise StaleExportError(f"{export_dir / export.model_file} was exported from an older checkpoint: run  "
                               f"{command}  again")
    return metadata


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()

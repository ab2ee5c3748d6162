"""``RUN/best.pt`` as an ONNX model plus a JSON file with everything needed to use it without this package:
the class names, the preprocessing and the unknown-character rule.

The metadata records a hash of the checkpoint it came from, so that a model trained further after its export is
noticed instead of silently served stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..evaluation.openset import OpenSetRule
from ..training import load_model
from ..run_dir import RunDir
from ..errors import UserError

MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
EXAMPLE_BATCH = 2
"""Batch size of the tracing example; above 1, so the exporter keeps the batch dimension dynamic."""
PREPROCESSING = ("decode to RGB (transparency onto white); resize the shorter side to image_size (bilinear, "
                 "antialiased); centre-crop image_size x image_size; scale to [0, 1]; subtract mean and divide by "
                 "std per channel; NCHW float32. Output: logits; softmax gives probabilities.")
HASH_CHUNK_BYTES = 1 << 20


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
    """``{"score": "max_logit" | "energy", "threshold": t}``: known when the score of the logits is >= t."""
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    preprocessing: str = PREPROCESSING

    @classmethod
    def read(cls, export_dir: str | Path) -> ExportMetadata:
        return cls(**json.loads((Path(export_dir) / METADATA_FILE).read_text()))


def export_onnx(run_dir: str | Path | RunDir, out_dir: str | Path | None = None) -> Path:
    """Write ``model.onnx`` and ``model.json`` to ``out_dir`` (default ``RUN/export``); returns the folder."""
    run_dir = RunDir(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir.export_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(run_dir)
    size = loaded.config.image_size
    export_model(loaded.model, size, out_dir / MODEL_FILE)
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
    (out_dir / METADATA_FILE).write_text(json.dumps(asdict(metadata), indent=2))
    return out_dir


def export_model(model: nn.Module, image_size: int, path: str | Path) -> None:
    """``model`` (in eval mode) as one ONNX file: ``images`` N×3×S×S float32 in, ``logits`` out, any batch size."""
    torch.onnx.export(
        model,
        (torch.zeros(EXAMPLE_BATCH, 3, image_size, image_size),),
        path,
        dynamo=True,
        verbose=False,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )


def check_fresh(run_dir: str | Path | RunDir, export_dir: str | Path) -> ExportMetadata:
    """The export's metadata, refused when the run's best.pt is not the checkpoint it was made from."""
    run_dir, export_dir = RunDir(run_dir), Path(export_dir)
    if not (export_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no ONNX model in {export_dir}: run  simpsons export --run {run_dir} --format onnx")
    metadata = ExportMetadata.read(export_dir)
    if metadata.checkpoint_sha256 != file_sha256(run_dir.best):
        raise StaleExportError(f"{export_dir} was exported from an older checkpoint: run  simpsons export --run "
                               f"{run_dir} --format onnx  again")
    return metadata


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()

"""A trained run behind one call: images in; the top-k characters, their probabilities, and whether the image
looks like a character the model knows at all.

Every backend (the PyTorch model, or its ONNX export, float or int8, under onnxruntime) gets the same
preprocessing, the one the run was evaluated with. The unknown-character rule was calibrated on the plain forward
pass (its logits and penultimate features), so it always judges that pass; with test-time augmentation the
ranking comes from the averaged views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from ..augment import build_eval_transform
from ..data.images import load_rgb
from ..errors import UserError
from ..evaluation.openset import OpenSetDetector
from ..evaluation.tta import tta_logits
from ..models import FeaturesAndLogits
from ..run_dir import RunDir
from ..training import load_model
from .export import ONNX_EXPORTS, check_fresh
from .onnx_runtime import OnnxModule
from .options import BACKENDS, DEFAULT_TOP_K, TORCH
from .quantize import warn_if_saturating

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Prediction:
    top_k: list[tuple[str, float]]
    """(character, probability), most likely first."""
    unknown: bool
    """The open-set score is below the run's threshold: probably none of the characters the model knows."""

    @property
    def label(self) -> str:
        return UNKNOWN if self.unknown else self.top_k[0][0]


class Predictor:
    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        image_size: int,
        mean: tuple[float, ...] | list[float],
        std: tuple[float, ...] | list[float],
        detector: OpenSetDetector | None,
        tta: bool = False,
        device: torch.device | None = None,
        features_and_logits: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.features_and_logits = features_and_logits or FeaturesAndLogits(self.model)
        """(logits, features) of a batch in one pass."""
        self.classes = list(classes)
        self.detector = detector
        """None for a run trained before open-set calibration: then nothing is called unknown."""
        self.tta = tta
        self.transform = build_eval_transform(image_size, mean, std)
        # JPEGs decode at a reduced scale that still covers twice the input size, as in evaluation.
        self.draft_size = (2 * image_size, 2 * image_size)

    @classmethod
    def from_run(cls, run_dir: str | Path | RunDir, backend: str = TORCH, tta: bool = False) -> Predictor:
        """The run's best model; ``backend="onnx"`` runs its export (``simpsons export``) with onnxruntime,
        ``"onnx-int8"`` the export's int8 quantisation (``simpsons export --int8``)."""
        run_dir = RunDir(run_dir)
        detector = OpenSetDetector.from_run(run_dir)
        if backend == TORCH:
            loaded = load_model(run_dir)
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            return cls(loaded.model, loaded.classes, loaded.config.image_size, loaded.mean, loaded.std, detector,
                       tta, device)
        if backend in ONNX_EXPORTS:
            export, export_dir = ONNX_EXPORTS[backend], run_dir.export_dir
            metadata = check_fresh(run_dir, export_dir, export)
            if metadata.quantisation is not None:
                warn_if_saturating(metadata.quantisation, export_dir / export.model_file)
            onnx = OnnxModule(export_dir / export.model_file)
            if detector is not None and detector.rule.needs_features and not onnx.has_features:
                raise UserError(f"{export_dir / export.model_file} has no features output, which the run's "
                                f"unknown-character score ({detector.rule.score}) reads: run  simpsons export "
                                f"--run {run_dir} {export.export_options}  again")
            return cls(onnx, metadata.classes, metadata.image_size, metadata.mean, metadata.std, detector, tta,
                       features_and_logits=onnx.features_and_logits)
        raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")

    def load(self, source: str | Path | BinaryIO) -> torch.Tensor:
        """One file (or file-like object) decoded and preprocessed; raises ``UnreadableImage`` with the reason."""
        return self.transform(load_rgb(source, draft_size=self.draft_size))

    @torch.inference_mode()
    def predict_batch(self, images: torch.Tensor, top_k: int = DEFAULT_TOP_K) -> list[Prediction]:
        """Predictions for a preprocessed N×3×H×W batch."""
        images = images.to(self.device)
        logits, features = (output.float().cpu() for output in self.features_and_logits(images))
        ranked = tta_logits(self.model, images).cpu() if self.tta else logits
        known = (self.detector.known(features, logits) if self.detector
                 else torch.ones(len(logits), dtype=torch.bool))
        values, indices = ranked.softmax(dim=1).topk(min(top_k, len(self.classes)), dim=1)
        return [
            Prediction([(self.classes[i], p) for p, i in zip(row_values, row_indices)], unknown=not is_known)
            for row_values, row_indices, is_known in zip(values.tolist(), indices.tolist(), known.tolist())
        ]

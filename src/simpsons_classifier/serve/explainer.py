"""Grad-CAM overlays for the web page, from the run's PyTorch model.

The explainer keeps a model of its own, loaded on first use: Grad-CAM hooks into the model and switches its
gradients on, which must never meet a prediction batch running on the same model in another thread (and with the
ONNX backend there is no PyTorch model otherwise). One explanation runs at a time.

With the ONNX backend the checkpoint may be missing, unreadable, or of other classes than the export (a hand-edited
``model.json``): then Grad-CAM is unavailable and says why, while predictions go on.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import torch
from PIL import Image

from ..explain.gradcam import gradcam, overlay
from ..training import LoadedModel, load_model
from .memory import release_freed_memory

MAX_PIXEL = 255
log = logging.getLogger(__name__)


class ExplanationUnavailable(RuntimeError):
    """Grad-CAM cannot run for this service's model; the message says why."""


class GradCamExplainer:
    def __init__(self, run_dir: str | Path, classes: list[str]) -> None:
        self.run_dir = Path(run_dir)
        self.classes = list(classes)
        """The classes the service answers with: the checkpoint must have the same, in the same order."""
        self.loaded: LoadedModel | None = None
        self.lock = threading.Lock()

    def png(self, image: torch.Tensor, class_index: int) -> bytes:
        """The Grad-CAM of ``class_index`` over a preprocessed 3×H×W ``image``, as PNG bytes."""
        with self.lock:
            loaded = self._model()
            try:
                cam = gradcam(loaded.model, image[None], [class_index])[0]
            finally:  # the activations and gradients of the backward pass
                release_freed_memory()
            mean = torch.tensor(loaded.mean)[:, None, None]
            std = torch.tensor(loaded.std)[:, None, None]
        pixels = ((image * std + mean).clamp(0, 1) * MAX_PIXEL).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(overlay(pixels, cam)).save(buffer, format="PNG")
        return buffer.getvalue()

    def _model(self) -> LoadedModel:
        if self.loaded is None:
            try:
                loaded = load_model(self.run_dir)
            except Exception as error:  # whatever keeps the checkpoint from loading makes Grad-CAM unavailable
                log.warning("Grad-CAM unavailable: %s: %s", type(error).__name__, error)  # details for the operator
                raise ExplanationUnavailable("Grad-CAM is unavailable: the run's PyTorch checkpoint cannot be "
                                             "loaded") from None
            if loaded.classes != self.classes:
                raise ExplanationUnavailable("Grad-CAM is unavailable: the run's PyTorch checkpoint has other classes "
                                             "than the model being served (re-export the run)")
            self.loaded = loaded
        return self.loaded

"""Grad-CAM overlays for the web page, from the run's PyTorch model.

The explainer keeps a model of its own, loaded on first use: Grad-CAM hooks into the model and switches its
gradients on, which must never meet a prediction batch running on the same model in another thread (and with the
ONNX backend there is no PyTorch model otherwise). One explanation runs at a time.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import torch
from PIL import Image

from ..explain.gradcam import gradcam, overlay
from ..training import LoadedModel, load_model

MAX_PIXEL = 255


class GradCamExplainer:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.loaded: LoadedModel | None = None
        self.lock = threading.Lock()

    def png(self, image: torch.Tensor, class_index: int) -> bytes:
        """The Grad-CAM of ``class_index`` over a preprocessed 3×H×W ``image``, as PNG bytes."""
        with self.lock:
            if self.loaded is None:
                self.loaded = load_model(self.run_dir)
            cam = gradcam(self.loaded.model, image[None], [class_index])[0]
            mean = torch.tensor(self.loaded.mean)[:, None, None]
            std = torch.tensor(self.loaded.std)[:, None, None]
        pixels = ((image * std + mean).clamp(0, 1) * MAX_PIXEL).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(overlay(pixels, cam)).save(buffer, format="PNG")
        return buffer.getvalue()

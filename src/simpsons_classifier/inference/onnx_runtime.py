"""An exported model run by onnxruntime, behind the same call as the PyTorch model.

It is an ``nn.Module`` only so that everything built for a model (test-time augmentation, the predictor)
takes it unchanged; it holds no parameters and never touches autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


class OnnxModule(nn.Module):
    """``forward(images N×3×H×W float32) -> logits N×C`` through an onnxruntime session, on the CPU unless
    ``providers`` says otherwise (the GPU benchmark's ``CUDAExecutionProvider``); ``features_and_logits`` gives
    the export's second output too."""

    def __init__(self, path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        super().__init__()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.has_features = len(self.session.get_outputs()) > 1
        """False for an export made before features were exported beside the logits."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)[0]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self._run(images)[:2]
        return logits, features

    def _run(self, images: torch.Tensor) -> list[torch.Tensor]:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return [torch.from_numpy(output) for output in self.session.run(None, {self.input_name: array})]

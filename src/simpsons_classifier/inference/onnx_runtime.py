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
    ``providers`` says otherwise (the GPU benchmark's ``CUDAExecutionProvider``)."""

    def __init__(self, path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        super().__init__()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

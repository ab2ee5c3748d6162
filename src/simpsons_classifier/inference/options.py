"""Choices and defaults shared by the commands and the inference code, free of heavy imports so that
``simpsons --help`` stays fast."""

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
BACKENDS = (TORCH, ONNX, ONNX_INT8)
BACKEND_HELP = ("onnx: the run's ONNX export (simpsons export) under onnxruntime; onnx-int8: its int8 quantisation "
                "(simpsons export --int8)")
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 32
CALIBRATION_IMAGES = 256
"""Training images an int8 export is calibrated on: a few hundred settle the activation ranges of a CNN."""

"""Choices and defaults shared by the commands and the inference code, free of heavy imports so that
``simpsons --help`` stays fast."""

BACKENDS = ("torch", "onnx")
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 32

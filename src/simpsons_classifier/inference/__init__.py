"""Using a trained run: the predictor (PyTorch or ONNX Runtime), prediction over files, and the ONNX export.

Nothing is imported here, so that the command line can read ``options`` without loading torch.
"""

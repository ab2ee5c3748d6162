"""The HTTP service: ``POST /predict``, ``POST /gradcam``, ``GET /healthz`` and a web page at ``/``."""

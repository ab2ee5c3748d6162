"""``simpsons serve --run RUN``: the HTTP API and its web page (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse

from ..inference.options import BACKEND_HELP, BACKENDS, TORCH
from ..serve.settings import MEGABYTE, ServeSettings

DEFAULTS = ServeSettings()


def register(subcommands) -> None:
    parser = subcommands.add_parser("serve", help="serve a run over HTTP: POST /predict, a web page at /")
    parser.add_argument("--run", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default=TORCH, help=BACKEND_HELP)
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_bytes / MEGABYTE)
    parser.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch,
                        help="most concurrent requests run in one forward pass")
    parser.add_argument("--batch-wait-ms", type=float, default=DEFAULTS.max_wait_ms,
                        help="how long a request waits for others to share its batch")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..inference.predictor import Predictor
    from ..serve.app import create_app

    if args.max_upload_mb <= 0 or args.max_batch < 1 or args.batch_wait_ms < 0:
        raise ValueError("--max-upload-mb must be positive, --max-batch at least 1, --batch-wait-ms >= 0")
    settings = ServeSettings(round(args.max_upload_mb * MEGABYTE), args.max_batch, args.batch_wait_ms)
    predictor = Predictor.from_run(args.run, args.backend, args.tta)
    uvicorn.run(create_app(predictor, args.run, settings), host=args.host, port=args.port)
    return 0

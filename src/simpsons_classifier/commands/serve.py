"""``simpsons serve --run RUN``: the HTTP API and its web page (FastAPI under uvicorn); ``POST /detect`` too when
the run holds a detector (``simpsons detect train``)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from . import add_run_argument
from ..inference.options import BACKEND_HELP, BACKENDS, TORCH
from ..serve.settings import API_KEY_VARIABLE, MEGABYTE, MEGAPIXEL, ServeSettings

DEFAULTS = ServeSettings()


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "serve", help="serve a run over HTTP: POST /predict (and /detect when the run has a detector), a web page at /")
    add_run_argument(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="127.0.0.1 (default) answers this machine only; 0.0.0.0 every network it is on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--backend", choices=BACKENDS, default=TORCH, help=BACKEND_HELP)
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average flips and zooms")
    parser.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch,
                        help="most concurrent requests run in one forward pass")
    parser.add_argument("--batch-wait-ms", type=float, default=DEFAULTS.max_wait_ms,
                        help="how long a request waits for others to share its batch")
    limits = parser.add_argument_group("limits (they bound the server's memory and time per request)")
    limits.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_bytes / MEGABYTE,
                        help="largest image file; larger gets 413 (default %(default)g)")
    limits.add_argument("--max-megapixels", type=float, default=DEFAULTS.max_pixels / MEGAPIXEL,
                        help="most pixels an image may decode to (a baseline JPEG counts at its reduced decode size); "
                             "more gets 413 (default %(default).1f)")
    limits.add_argument("--max-decodes", type=int, default=DEFAULTS.max_decodes,
                        help="images decoded at the same time (default %(default)s)")
    limits.add_argument("--max-requests", type=int, default=DEFAULTS.max_requests,
                        help="requests in progress at once; more get 503 with Retry-After (default %(default)s)")
    limits.add_argument("--header-timeout", type=float, default=DEFAULTS.header_timeout_s, metavar="SECONDS",
                        help="close a connection whose request headers take longer (default %(default)g)")
    limits.add_argument("--upload-timeout", type=float, default=DEFAULTS.upload_timeout_s, metavar="SECONDS",
                        help="408 for a request body that takes longer to arrive (default %(default)g)")
    limits.add_argument("--request-timeout", type=float, default=DEFAULTS.request_timeout_s, metavar="SECONDS",
                        help="503 for a request not answered within this (default %(default)g)")
    limits.add_argument("--graceful-timeout", type=float, default=DEFAULTS.graceful_timeout_s, metavar="SECONDS",
                        help="on Ctrl-C or SIGTERM, how long requests in progress may take to finish "
                             "(default %(default)g)")
    access = parser.add_argument_group("access (off by default)")
    access.add_argument("--api-key", default=os.environ.get(API_KEY_VARIABLE),
                        help=f"require this key on every route but /healthz, in the X-API-Key header or as the "
                             f"HTTP Basic password (default: the environment variable {API_KEY_VARIABLE}, which "
                             f"keeps it out of the process list)")
    access.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (e.g. https://example.org) call the API; repeatable")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..detection.predictor import DetectionPredictor
    from ..inference.predictor import Predictor
    from ..run_dir import RunDir
    from ..serve.app import create_app
    from ..serve.server import serve

    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise ValueError("--max-upload-mb and --max-megapixels must be positive")
    if args.api_key is not None and not args.api_key.strip():
        raise ValueError(f"the API key (--api-key or {API_KEY_VARIABLE}) is empty: give one, or unset it to serve "
                         "without a key")
    settings = ServeSettings(
        max_upload_bytes=round(args.max_upload_mb * MEGABYTE), max_batch=args.max_batch,
        max_wait_ms=args.batch_wait_ms, max_pixels=round(args.max_megapixels * MEGAPIXEL),
        max_decodes=args.max_decodes, max_requests=args.max_requests, header_timeout_s=args.header_timeout,
        upload_timeout_s=args.upload_timeout, request_timeout_s=args.request_timeout,
        graceful_timeout_s=args.graceful_timeout, api_key=args.api_key, cors_origins=tuple(args.cors_origin),
    )
    if not settings.api_key and not _loopback(args.host):
        print(f"warning: serving on {args.host} without an API key: anyone who can reach this machine can use the "
              f"service (set {API_KEY_VARIABLE})", file=sys.stderr)
    run_dir = RunDir(args.run)
    predictor = Predictor.from_run(run_dir, args.backend, args.tta)
    detector = DetectionPredictor.from_run(run_dir) if run_dir.detector.holds_detector() else None
    serve(create_app(predictor, args.run, settings, detector), settings, args.host, args.port)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

"""Load test of a running ``simpsons serve``: N concurrent clients, each sending M ``POST /predict`` in a row.

    simpsons serve --run runs/demo &
    python benchmarks/serve_load.py --images data/standin --clients 16 --requests 500

Only a server on this machine (127.0.0.1 / localhost / ::1) is accepted, and the run is bounded in clients,
requests and seconds. Reports requests/s, p50/p99 latency and errors (any status but 200, or no answer).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import mimetypes
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_CLIENTS = 256
MAX_REQUESTS_PER_CLIENT = 10_000
MAX_IMAGES = 1_000
"""Images are read into memory once and cycled through."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Tally:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending to the full answer, of every request answered (whatever its status)."""
    errors: list[str] = field(default_factory=list)


async def client(http: httpx.AsyncClient, images: list[tuple[str, bytes]], requests: int, offset: int,
                 deadline: float, tally: Tally) -> None:
    """Send ``requests`` one after another (stopping at ``deadline``), starting at image ``offset``."""
    for name, data in itertools.islice(itertools.cycle(images), offset, offset + requests):
        if time.monotonic() > deadline:
            return
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        tally.sent += 1
        started = time.perf_counter()
        try:
            response = await http.post("/predict", files={"image": (name, data, content_type)})
        except httpx.HTTPError as error:
            tally.errors.append(f"{type(error).__name__}: {error}")
            continue
        tally.latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            tally.errors.append(f"{response.status_code}: {response.text[:200]}")


async def load_test(url: str, images: list[tuple[str, bytes]], clients: int, requests: int, max_seconds: float
                    ) -> dict:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as http:
        (await http.get("/healthz")).raise_for_status()
        started = time.perf_counter()
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(*(client(http, images, requests, i * requests, deadline, tally) for i in range(clients)))
        elapsed = time.perf_counter() - started
    milliseconds = 1000 * np.array(tally.latencies) if tally.latencies else np.zeros(1)
    return {
        "url": url,
        "clients": clients,
        "requests_per_client": requests,
        "requests_sent": tally.sent,
        "requests_planned": clients * requests,
        "seconds": elapsed,
        "requests_per_second": tally.sent / elapsed,
        "latency_ms_p50": float(np.percentile(milliseconds, 50)),
        "latency_ms_p99": float(np.percentile(milliseconds, 99)),
        "errors": len(tally.errors),
        "first_errors": tally.errors[:5],
        "stopped_by_time_limit": tally.sent < clients * requests,
    }


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir()
                     else [path])
    return [(f.name, f.read_bytes()) for f in files[:MAX_IMAGES]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders (cycled through)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=500, help="requests per client")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK_HOSTS:
        parser.error(f"--url must point at this machine ({', '.join(sorted(LOOPBACK_HOSTS))})")
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.requests <= MAX_REQUESTS_PER_CLIENT):
        parser.error(f"--clients must be in 1..{MAX_CLIENTS} and --requests in 1..{MAX_REQUESTS_PER_CLIENT}")
    images = read_images(args.images)
    if not images:
        parser.error("no images found")
    result = asyncio.run(load_test(args.url, images, args.clients, args.requests, args.max_seconds))
    print(f"{result['requests_sent']} requests from {args.clients} clients in {result['seconds']:.1f} s: "
          f"{result['requests_per_second']:.1f} requests/s, latency p50 {result['latency_ms_p50']:.0f} ms, "
          f"p99 {result['latency_ms_p99']:.0f} ms, {result['errors']} errors"
          + (" (stopped by --max-seconds)" if result["stopped_by_time_limit"] else ""))
    for error in result["first_errors"]:
        print(f"  {error}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

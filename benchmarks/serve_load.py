"""Load test of a running ``simpsons serve``: N concurrent clients, each sending M ``POST /predict`` in a row.

    simpsons serve --run runs/demo &
    python benchmarks/serve_load.py --images data/standin --clients 16 --requests 500 --server-pid $!

Only a server on this machine (127.0.0.1 / localhost / ::1) is accepted, and the run is bounded in clients,
requests, rounds and seconds. Reports requests/s, p50/p99 latency and errors (any status but 200, or no answer) per
round; with ``--server-pid`` (Linux) also the server's resident memory after each round, and its growth from the
end of the first round (which warms the server up) to the end of the last.
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
MAX_ROUNDS = 20
MAX_IMAGES = 1_000
"""Images are read into memory once and cycled through."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
REQUEST_TIMEOUT_S = 60.0
KEEPALIVE_EXPIRY_S = 2.0
"""Below the server's keep-alive timeout (uvicorn: 5 s), so that no request goes out on a connection the server is
closing for being idle: a race that would count as an error of the server's."""


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
    limits = httpx.Limits(max_connections=clients, keepalive_expiry=KEEPALIVE_EXPIRY_S)
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


def resident_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


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
    parser.add_argument("--requests", type=int, default=500, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=1, help="run the load this many times, one after another")
    parser.add_argument("--server-pid", type=int, help="report this process's resident memory after each round")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long, per round")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK_HOSTS:
        parser.error(f"--url must point at this machine ({', '.join(sorted(LOOPBACK_HOSTS))})")
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.requests <= MAX_REQUESTS_PER_CLIENT
            and 1 <= args.rounds <= MAX_ROUNDS):
        parser.error(f"--clients must be in 1..{MAX_CLIENTS}, --requests in 1..{MAX_REQUESTS_PER_CLIENT} and "
                     f"--rounds in 1..{MAX_ROUNDS}")
    images = read_images(args.images)
    if not images:
        parser.error("no images found")
    summary: dict = {"rounds": []}
    if args.server_pid:
        summary["server_rss_mb_before"] = resident_mb(args.server_pid)
    for number in range(1, args.rounds + 1):
        result = asyncio.run(load_test(args.url, images, args.clients, args.requests, args.max_seconds))
        memory = ""
        if args.server_pid:
            result["server_rss_mb"] = resident_mb(args.server_pid)
            memory = f", server resident memory {result['server_rss_mb']:.0f} MiB"
        summary["rounds"].append(result)
        print(f"round {number}: {result['requests_sent']} requests from {args.clients} clients in "
              f"{result['seconds']:.1f} s: {result['requests_per_second']:.1f} requests/s, latency p50 "
              f"{result['latency_ms_p50']:.0f} ms, p99 {result['latency_ms_p99']:.0f} ms, {result['errors']} errors"
              + memory + (" (stopped by --max-seconds)" if result["stopped_by_time_limit"] else ""))
        for error in result["first_errors"]:
            print(f"  {error}", file=sys.stderr)
    if args.server_pid:
        rounds = summary["rounds"]
        summary["server_rss_growth_mb"] = rounds[-1]["server_rss_mb"] - rounds[0]["server_rss_mb"]
        print(f"server resident memory: {summary['server_rss_mb_before']:.0f} MiB before, "
              f"{rounds[0]['server_rss_mb']:.0f} after round 1, {rounds[-1]['server_rss_mb']:.0f} after round "
              f"{len(rounds)} ({summary['server_rss_growth_mb']:+.0f} MiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if any(result["errors"] for result in summary["rounds"]) else 0


if __name__ == "__main__":
    sys.exit(main())

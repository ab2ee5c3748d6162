"""Memory of a running ``simpsons serve`` under bursts of large uploads: for each kind of image, N copies sent at
once, and how far the server's resident memory rose above its level before (peak) and stayed (after).

    simpsons serve --run runs/demo &
    python benchmarks/serve_memory.py --server-pid $!

Linux only (it reads /proc/PID/status and resets the peak through /proc/PID/clear_refs, which needs the server's
user or root). Only a server on this machine is accepted. The images are solid colours, so each file is small
(a few hundred KB at most) however many pixels it holds: the cost is all in decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image
from serve_load import LOOPBACK_HOSTS, REQUEST_TIMEOUT_S, resident_mb

MAX_PARALLEL = 64
KINDS = {
    "8000x8000 RGB PNG": ("RGB", 8000, "PNG", {}),
    "4096x4096 RGB PNG": ("RGB", 4096, "PNG", {}),
    "4096x4096 RGBA PNG": ("RGBA", 4096, "PNG", {}),
    "4096x4096 16-bit PNG": ("I;16", 4096, "PNG", {}),
    "4096x4096 float TIFF": ("F", 4096, "TIFF", {"compression": "tiff_deflate"}),
    "4096x4096 RGBA WebP": ("RGBA", 4096, "WEBP", {"lossless": True}),
}


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


def encoded(mode: str, side: int, image_format: str, options: dict) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (side, side)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


async def burst(url: str, name: str, data: bytes, parallel: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        responses = await asyncio.gather(*(
            http.post("/predict", files={"image": (name, data, "application/octet-stream")}) for _ in range(parallel)))
    return [response.status_code for response in responses]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=8, help="copies of each image sent at once")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK_HOSTS:
        parser.error(f"--url must point at this machine ({', '.join(sorted(LOOPBACK_HOSTS))})")
    if not 1 <= args.parallel <= MAX_PARALLEL:
        parser.error(f"--parallel must be in 1..{MAX_PARALLEL}")
    clear_refs = Path(f"/proc/{args.server_pid}/clear_refs")
    print(f"server resident memory when idle: {resident_mb(args.server_pid):.0f} MiB")
    for kind, (mode, side, image_format, options) in KINDS.items():
        data = encoded(mode, side, image_format, options)
        clear_refs.write_text("5")  # the peak starts again from the current resident size
        before = resident_mb(args.server_pid)
        statuses = asyncio.run(burst(args.url, f"image.{image_format.lower()}", data, args.parallel))
        print(f"{args.parallel} x {kind} ({len(data) // 1024} KB): answers {sorted(set(statuses))}, peak "
              f"+{peak_mb(args.server_pid) - before:.0f} MiB, after {resident_mb(args.server_pid) - before:+.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

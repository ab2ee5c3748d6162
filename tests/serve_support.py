"""What the serve tests share: one tiny trained run per test session, an app under uvicorn in a thread, and
``simpsons serve`` in a process of its own, on 127.0.0.1 only, whose memory the tests can read."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from simpsons_classifier.serve.server import server_config
from simpsons_classifier.serve.settings import ServeSettings

SERVER_START_TIMEOUT_S = 120
"""Generous: starting means importing torch and loading the model, on a machine shared with other work."""
LOOPBACK = "127.0.0.1"
MEGABYTE = 1024 * 1024


def run_in_fresh_loop(coroutine):
    """asyncio.run on a thread of its own: the session-wide Playwright browser keeps a loop in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ServerProcess:
    """``simpsons serve --run RUN ARGS`` on a free port of 127.0.0.1, in a process of its own."""

    def __init__(self, run: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        command = [sys.executable, "-m", "simpsons_classifier", "serve", "--run", str(run), "--host", LOOPBACK,
                   "--port", str(self.port), *args]
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would stall the server
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"simpsons serve did not start:\n{self.stop()[1]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def memory_mb(self, field: str) -> float:
        """A memory figure of the server process from /proc: ``VmRSS`` (now) or ``VmHWM`` (peak)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def reset_peak(self) -> None:
        """Start ``VmHWM`` again from the current resident size (Linux: 5 into clear_refs)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def stop(self, timeout_s: float = 60) -> tuple[int, str]:
        """SIGTERM, as a service manager sends; the exit code and everything the server printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.seek(0)
        return self.process.returncode, self.log.read()


def serving_in_thread(app: FastAPI, settings: ServeSettings) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a background thread, for as long as the generator is not closed."""
    port = free_port()
    server = uvicorn.Server(server_config(app, settings, LOOPBACK, port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://{LOOPBACK}:{port}"
    server.should_exit = True
    thread.join()

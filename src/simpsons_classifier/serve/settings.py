"""The service's knobs, free of heavy imports so that ``simpsons --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    max_upload_bytes: int = 10 * MEGABYTE
    """Largest image file accepted; a larger upload gets 413."""
    max_batch: int = 32
    """Most requests run in one forward pass."""
    max_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it."""

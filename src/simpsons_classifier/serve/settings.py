"""The service's knobs, free of heavy imports so that ``simpsons --help`` stays fast.

The defaults bound the server's memory without getting in a local user's way; the options that change who may
call the service (an API key, CORS origins) are off until asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

MEGABYTE = 1024 * 1024
MEGAPIXEL = 1_000_000
API_KEY_VARIABLE = "SIMPSONS_API_KEY"
"""The environment variable ``simpsons serve`` reads the API key from when ``--api-key`` is not given."""


@dataclass(frozen=True)
class ServeSettings:
    max_upload_bytes: int = 10 * MEGABYTE
    """Largest image file accepted; a larger upload gets 413."""
    max_batch: int = 32
    """Most requests run in one forward pass."""
    max_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it."""
    max_pixels: int = 4096 * 4096
    """Most pixels an upload may decode to (a baseline JPEG counts at its reduced decode size); more gets 413.
    A decode takes under 24 bytes a pixel (measured: 19 for a float TIFF, 17 for an RGBA WebP, 10 for an RGB PNG),
    so this and ``max_decodes`` bound the memory of decoding: 2 x 24 B x 16.8 M = 0.75 GiB at the defaults."""
    max_decodes: int = 2
    """Uploads decoded at the same time; the others wait their turn without holding decoded pixels."""
    max_requests: int = 128
    """Requests in progress at once (``/healthz`` aside); one more is answered 503 with ``Retry-After``."""
    header_timeout_s: float = 10.0
    """A connection whose request headers are not complete this long after it opened (or after its previous
    answer) is closed."""
    upload_timeout_s: float = 60.0
    """A request whose body has not fully arrived this long after its headers gets 408."""
    request_timeout_s: float = 120.0
    """A request not answered this long after its headers gets 503 (its work is abandoned)."""
    graceful_timeout_s: float = 30.0
    """On shutdown (Ctrl-C, SIGTERM), requests in progress get this long to finish before they are cancelled."""
    api_key: str | None = None
    """When set, every route but ``/healthz`` needs it: header ``X-API-Key``, or as the password of HTTP Basic."""
    cors_origins: tuple[str, ...] = ()
    """Web origins whose pages may call the API from a browser; none by default (same origin only)."""

    def __post_init__(self) -> None:
        counts = {"max_upload_bytes": self.max_upload_bytes, "max_batch": self.max_batch,
                  "max_pixels": self.max_pixels, "max_decodes": self.max_decodes, "max_requests": self.max_requests}
        durations = {"header_timeout_s": self.header_timeout_s, "upload_timeout_s": self.upload_timeout_s,
                     "request_timeout_s": self.request_timeout_s, "graceful_timeout_s": self.graceful_timeout_s}
        wrong = [f"{name} must be at least 1" for name, value in counts.items() if value < 1]
        wrong += [f"{name} must be positive" for name, value in durations.items() if not value > 0]
        if self.max_wait_ms < 0:
            wrong.append("max_wait_ms must be >= 0")
        if self.api_key is not None and not self.api_key.strip():
            wrong.append("api_key must not be empty")
        if wrong:
            raise ValueError("serve settings: " + "; ".join(wrong))

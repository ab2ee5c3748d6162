"""The app under uvicorn with the service's connection limits: a deadline for request headers, and a graceful
shutdown that lets requests in progress finish.

uvicorn has no deadline for the headers of a request: a client that opens a connection and never finishes its
headers holds it open for ever (the keep-alive timeout starts only after a first answer, and any byte cancels it).
``HeaderDeadlineProtocol`` adds one to uvicorn's h11 protocol (the one uvicorn uses unless httptools is installed;
``server_config`` asks for it whatever is installed).
"""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServeSettings


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete ``header_timeout_s``
    after it opened, or after the first byte of a later request on it (between requests, uvicorn's keep-alive
    timeout applies)."""

    header_timeout_s = ServeSettings().header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_deadline: asyncio.TimerHandle | None = None
        self.request_seen = None
        super().connection_made(transport)
        self._await_headers()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self.header_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # the first bytes of a next request
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not self.request_seen:  # a new request's headers are complete
            self.request_seen = self.cycle
            self._cancel_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self.header_deadline = self.loop.call_later(self.header_timeout_s, self._close_slow_connection)

    def _cancel_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _close_slow_connection(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: FastAPI, settings: ServeSettings, host: str, port: int, **options) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` with the limits of ``settings``; ``options`` go to uvicorn as they are."""
    protocol = type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol,
                          timeout_graceful_shutdown=settings.graceful_timeout_s, **options)


def serve(app: FastAPI, settings: ServeSettings, host: str, port: int) -> None:
    """Run until Ctrl-C or SIGTERM, then let requests in progress finish (up to ``settings.graceful_timeout_s``)."""
    uvicorn.Server(server_config(app, settings, host, port)).run()

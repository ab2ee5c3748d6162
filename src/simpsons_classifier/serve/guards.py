"""Who may call the service, how many requests it takes on at once, and how long each may take: ASGI middlewares
around the app, answering in FastAPI's error shape ``{"detail": "..."}``.

Both leave the ``open_paths`` (the health check) alone, so a monitor can tell "up" from "busy" without a key.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
REALM = 'Basic realm="simpsons serve", charset="UTF-8"'
"""Asks a browser for the key (as the password, any user name), so the web page and /docs work behind a key."""
RETRY_AFTER_S = 1


class ApiKeyGuard:
    """401 unless the request carries the key: header ``X-API-Key``, or HTTP Basic with the key as password."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self.key = api_key.encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._carries_key(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": f"missing or wrong API key: send it in the {API_KEY_HEADER} header"},
                                401, headers={"WWW-Authenticate": REALM})
        await response(scope, receive, send)

    def _carries_key(self, headers: Headers) -> bool:
        offered = [headers.get(API_KEY_HEADER, "").encode()]
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                offered.append(base64.b64decode(credentials.strip(), validate=True).partition(b":")[2])
            except (binascii.Error, ValueError):
                pass
        return any(secrets.compare_digest(key, self.key) for key in offered)


class RequestLimits:
    """At most ``max_requests`` requests in progress (one more gets 503 with ``Retry-After``); a body that has not
    arrived ``upload_timeout_s`` after the headers gets 408, an answer not started ``request_timeout_s`` after them
    gets 503. A request past its deadline is cancelled, so its work stops where it waits next."""

    def __init__(self, app: ASGIApp, max_requests: int, upload_timeout_s: float, request_timeout_s: float,
                 open_paths: frozenset[str]) -> None:
        self.app = app
        self.max_requests = max_requests
        self.upload_timeout_s = upload_timeout_s
        self.request_timeout_s = request_timeout_s
        self.open_paths = open_paths
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_requests:
            await _busy(f"the server is busy with {self.in_progress} requests; retry in {RETRY_AFTER_S} s")(
                scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self._with_deadlines(scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _with_deadlines(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = anyio.current_time()
        headers = Headers(scope=scope)
        body_pending = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        answered = False
        first_deadline = min(self.upload_timeout_s, self.request_timeout_s) if body_pending else self.request_timeout_s
        with anyio.CancelScope(deadline=started + first_deadline) as deadline:
            async def receive_within_deadline() -> Message:
                nonlocal body_pending
                message = await receive()
                if body_pending and not (message["type"] == "http.request" and message.get("more_body", False)):
                    body_pending = False
                    deadline.deadline = started + self.request_timeout_s
                return message

            async def send_lifting_deadline(message: Message) -> None:
                nonlocal answered
                if message["type"] == "http.response.start":
                    answered = True
                    deadline.deadline = math.inf  # the answer itself is never cut short
                await send(message)

            await self.app(scope, receive_within_deadline, send_lifting_deadline)
        if not deadline.cancelled_caught or answered:
            return
        if body_pending:
            response = JSONResponse({"detail": f"the request body did not arrive within {self.upload_timeout_s:g} s"},
                                    408, headers={"Connection": "close"})
        else:
            response = _busy(f"no answer within {self.request_timeout_s:g} s; the server is overloaded, "
                             f"retry in {RETRY_AFTER_S} s")
        await response(scope, receive, send)


def _busy(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, 503, headers={"Retry-After": str(RETRY_AFTER_S)})

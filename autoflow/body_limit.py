"""An ASGI wrapper that refuses request bodies larger than MAX_REQUEST_BYTES with 413.

Django's ASGI handler reads the whole body before any middleware runs, and DRF reads JSON
from the raw stream, so `DATA_UPLOAD_MAX_MEMORY_SIZE` covers neither: the limit has to be
decided here, from Content-Length before reading, and while reading a chunked body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from autoflow.exceptions import error_body
from autoflow.middleware import incoming_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
logger = structlog.get_logger("autoflow.request")


class BodySizeLimit:
    """Answer 413 `payload_too_large` for an oversize HTTP body; pass everything else through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                await self._refuse(scope, send, headers)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit, then replay what was read.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(scope, send, headers)
                return
            if not message.get("more_body", False):
                break
        if messages and messages[-1]["type"] == "http.request":
            # DRF reads a body only as far as Content-Length says; the body is whole and
            # bounded now, so state its length.
            scope = dict(scope)
            scope["headers"] = [
                *scope.get("headers", []),
                (b"content-length", str(received).encode()),
            ]
        replay = iter(messages)

        async def replaying_receive() -> Message:
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replaying_receive, send)

    async def _refuse(self, scope: Scope, send: Send, headers: dict[bytes, bytes]) -> None:
        request_id = incoming_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        body = json.dumps(
            error_body(
                "payload_too_large",
                f"The request body is larger than {self.max_bytes} bytes.",
                {"max_bytes": self.max_bytes},
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        logger.info(
            "request",
            request_id=request_id,
            method=scope.get("method"),
            path=scope.get("path"),
            status=413,
            duration_ms=0,
            user_id=None,
        )

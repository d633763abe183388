"""Request-size limits of the web server: a JSON body over MAX_BODY_BYTES is refused with HTTP 413
before it is parsed (a 60 MB body was read and parsed whole before Gradio refused it). File
uploads are left to Gradio's own `max_file_size` (ui/demo.launch_options), which streams them.
A plain ASGI middleware, passed to Gradio's FastAPI app through launch(app_kwargs=...)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY_BYTES = 10 * 2**20  # /predict_batch's largest valid call (256 texts x 2,000 characters) is ~3 MB

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body grew past the limit while it was read (a request without Content-Length)."""


class BodyLimit:
    """Refuse request bodies over `max_bytes` (HTTP 413, a JSON `detail` saying the sizes), except
    on paths ending with one of `skip` (uploads)."""

    def __init__(self, app: Callable, max_bytes: int = MAX_BODY_BYTES, skip: tuple[str, ...] = ("/upload",)) -> None:
        self.app, self.max_bytes, self.skip = app, max_bytes, skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/").endswith(self.skip):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        seen = 0

        async def counted() -> Message:  # a body sent in chunks, without a length: count as it comes
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, seen)

    async def _refuse(self, send: Send, size: int) -> None:
        await refuse(send, 413, f"The request body is {size / 2**20:.1f} MB; the limit is "
                                f"{self.max_bytes / 2**20:.0f} MB. Send fewer or shorter texts per call, or upload a CSV.")


async def refuse(send: Send, status: int, detail: str) -> None:
    """Answer an ASGI request with `status` and a JSON body {"detail": detail}, as FastAPI's errors do
    (this module's BodyLimit, ui/sessions.GoneAccounts)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

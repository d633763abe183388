"""Signed-in sessions whose account was deleted (`bertdemo users remove`) end: Gradio keeps a
session's token until a restart, so this ASGI middleware refuses (HTTP 401) every request of a
token whose user no longer has an account and drops the token, on every route (read-only ones such
as /predict too). Whether a name still has an account is cached for CACHE_S seconds, so a deletion
takes effect within that and a busy app does not query the accounts on every request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie

from sqlalchemy.engine import Engine

from bertdemo import auth
from bertdemo.ui.limits import Receive, Scope, Send, refuse

CACHE_S = 5.0


class GoneAccounts:
    """Refuse the sessions of deleted accounts (see the module docstring)."""

    def __init__(self, app: Callable, engine: Engine) -> None:
        self.app, self.engine = app, engine
        self._lock = threading.Lock()
        self._known: dict[str, tuple[bool, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gradio = scope.get("app")
        token = _token(scope, getattr(gradio, "cookie_id", None)) if scope["type"] == "http" else None
        name = getattr(gradio, "tokens", {}).get(token) if token else None
        if name and not self.exists(name):
            gradio.tokens.pop(token, None)  # Gradio's own checks treat the session as signed out from now on
            await refuse(send, 401, f"The account {name!r} no longer exists; sign in with another one.")
            return
        await self.app(scope, receive, send)

    def exists(self, name: str) -> bool:
        at = time.monotonic()
        with self._lock:
            known = self._known.get(name)
            if known is not None and at - known[1] < CACHE_S:
                return known[0]
        exists = auth.role_of(self.engine, name) is not None
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[name] = (exists, at)
        return exists


def _token(scope: Scope, cookie_id: str | None) -> str | None:
    if not cookie_id:
        return None
    raw = dict(scope.get("headers") or []).get(b"cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return None
    for key in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if key in jar:
            return jar[key].value
    return None

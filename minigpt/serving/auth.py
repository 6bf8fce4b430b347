"""`--api_key`: every path but the open ones answers 401 without `Authorization: Bearer <key>`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from minigpt.serving.errors import error_body


class BearerKey:
    """ASGI middleware that checks the key before the app reads anything of the request."""

    def __init__(self, app: ASGIApp, key: str, open_paths: Iterable[str]) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        message = "a valid API key is needed: send the header Authorization: Bearer <key> (the server's --api_key)"
        body = json.dumps(error_body(401, message, code="invalid_api_key")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return secrets.compare_digest(given, self.expected)

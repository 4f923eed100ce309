"""The limits every request passes before the application sees it (a plain ASGI middleware).

- API key: with a key set, every route but ``/health`` needs ``Authorization: Bearer
  <key>`` (compared in constant time); otherwise 401. The admin key (a separate secret)
  opens every route too and marks the request as the admin's: only such a request may
  add the evaluation data that decides the promotion gate.
- Body size: a ``Content-Length`` over the limit is answered 413 at once, without reading
  the body; a body sent without a length is counted as it arrives and cut off at the limit.
- Body time: each chunk of the body must arrive within ``body_timeout_s`` (408), so a
  half-sent request cannot hold the server.
- Nesting: JSON nested deeper than ``max_depth`` is refused (400) before it is parsed.

Every refusal is a JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass

from clora.errors import ConfigError

OPEN_PATHS = ("/health",)


@dataclass(frozen=True)
class Limits:
    """What a request may be: body bytes, seconds per body chunk, JSON depth; the API key (None: none)."""

    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    max_depth: int = 32
    api_key: str | None = None
    #: the privilege to write what decides the promotion gate (evaluation feedback); it also opens every route
    admin_key: str | None = None
    max_header_bytes: int = 16 << 10

    def __post_init__(self) -> None:
        for name, variable in (("api_key", "CLORA_API_KEY"), ("admin_key", "CLORA_ADMIN_KEY")):
            key = getattr(self, name)
            if key is not None and not key.strip():
                # an empty key variable is a mistake more often than a wish for an open server: start nothing
                raise ConfigError(f"the {name.replace('_', ' ')} is empty (an empty {variable}?): give a key, or "
                                  "leave it unset", field=name)
        if self.admin_key is not None and self.admin_key == self.api_key:
            raise ConfigError("the admin key must differ from the API key: every client holds the API key",
                              field="admin_key")
        if isinstance(self.max_header_bytes, bool) or not isinstance(self.max_header_bytes, int) or \
                self.max_header_bytes < 1024:
            raise ConfigError(f"the header limit must be at least 1024 bytes, got {self.max_header_bytes!r}",
                              field="max_header_bytes")


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: list | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or []


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when ``body`` (JSON text) opens more than ``limit`` arrays/objects at once (strings skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # too few brackets to be that deep: skip the scan
        return False
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def error_body(path: str, message: str, status: int) -> dict:
    """``{"error": message}``, or under ``/v1/`` the OpenAI API's ``{"error": {"message", "type", "param",
    "code"}}``, so that OpenAI clients read clora's refusals as they read OpenAI's."""
    if not path.startswith("/v1/"):
        return {"error": message}
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def send_json(send, status: int, data: dict, headers: list | None = None) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps an ASGI ``app``; ``on_response(path, status, seconds)`` is told of every HTTP response."""

    def __init__(self, app, limits: Limits, on_response=None):
        self.app, self.limits = app, limits
        self.on_response = on_response or (lambda path, status, seconds: None)

    def _check_key(self, scope) -> None:
        """Refuse a request without the API key; mark one with the admin key (``scope["state"]["admin"]``)."""
        given = dict(scope["headers"]).get(b"authorization", b"")
        admin = self.limits.admin_key is not None and hmac.compare_digest(
            given, f"Bearer {self.limits.admin_key}".encode())
        scope.setdefault("state", {})["admin"] = admin
        if self.limits.api_key is None or scope["path"] in OPEN_PATHS or admin:
            return
        expected = f"Bearer {self.limits.api_key}".encode()
        if not hmac.compare_digest(given, expected):
            raise Refused(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                          [(b"www-authenticate", b"Bearer")])

    async def _read_body(self, scope, receive) -> bytes:
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body_bytes):
            raise Refused(413, f"request body over {self.limits.max_body_bytes} bytes")
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_timeout_s)
            except asyncio.TimeoutError:
                raise Refused(408, f"request body not received within {self.limits.body_timeout_s:g} s") from None
            if message["type"] == "http.disconnect":
                raise Refused(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise Refused(413, f"request body over {self.limits.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = asyncio.get_running_loop().time()
        status = {"code": 500}

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            self._check_key(scope)
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if json_depth_exceeds(body, self.limits.max_depth):
                    raise Refused(400, f"JSON nested deeper than {self.limits.max_depth} levels")
                receive = _replay(body, receive)
            await self.app(scope, receive, tracked_send)
        except Refused as refused:
            headers = refused.headers
            if refused.status in (408, 413):  # the rest of the body is not wanted: end the connection
                headers = headers + [(b"connection", b"close")]
            await send_json(tracked_send, refused.status, error_body(scope["path"], str(refused), refused.status),
                            headers)
        finally:
            self.on_response(scope["path"], status["code"], asyncio.get_running_loop().time() - started)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the already-read body to the application once, then waits on the connection's
    own ``receive``: a streamed response listens for the client's disconnect there, and a made-up one would
    end the stream at its first await."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

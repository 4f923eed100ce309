"""``clora serve``: the HTTP API (``clora.serving.app``) on uvicorn, with connection limits."""

from __future__ import annotations

import logging
from collections.abc import Callable

from clora.errors import ConfigError
from clora.serving.app import ServeSettings, create_app
from clora.serving.inference import LoadedLibrary

log = logging.getLogger("clora")


def check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 1-65535 (0: any free port), got {port!r}", field="port")


def with_header_timeout(seconds: float):
    """uvicorn's HTTP protocol, closing a connection whose first request's headers are not complete within
    ``seconds``: uvicorn itself times out only idle keep-alive connections, so a client that sends half its
    headers (slowloris) would otherwise hold its connection for ever."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - without httptools uvicorn parses with h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class HeaderTimeoutProtocol(Base):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._headers_timer = self.loop.call_later(seconds, self._headers_late)

        def _headers_late(self):
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            self._headers_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def make_server(library: LoadedLibrary, host: str, port: int, settings: ServeSettings = ServeSettings(),
                max_connections: int = 256, keep_alive_s: float = 5.0):
    """A uvicorn ``Server`` for ``library`` (not started). Over ``max_connections`` open connections or
    requests, new requests get 503; an idle keep-alive connection is closed after ``keep_alive_s``, one
    whose headers do not arrive within the body timeout at once."""
    import uvicorn

    check_port(port)
    config = uvicorn.Config(create_app(library, settings), host=host, port=port, log_level="warning",
                            access_log=False, limit_concurrency=max_connections, timeout_keep_alive=keep_alive_s,
                            http=with_header_timeout(settings.limits.body_timeout_s), lifespan="on")
    return uvicorn.Server(config)


def listen(host: str, port: int):
    """A listening socket on ``host:port`` (port 0: any free one), or one line saying why not."""
    import socket

    check_port(port)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", field="port") from None
    return sock


def serve(library: LoadedLibrary, host: str, port: int, settings: ServeSettings = ServeSettings(),
          ready: Callable[[int], None] | None = None, **options) -> None:
    """Serve until interrupted; ``ready(port)`` is called once the socket listens (with the real port for 0)."""
    sock = listen(host, port)
    server = make_server(library, host, sock.getsockname()[1], settings, **options)
    if ready is not None:
        ready(sock.getsockname()[1])
    server.run(sockets=[sock])

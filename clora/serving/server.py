"""``clora serve``: the HTTP API (``clora.serving.app``) on uvicorn, with connection limits."""

from __future__ import annotations

import logging
from collections.abc import Callable

from clora.errors import ConfigError
from clora.serving.app import ServeSettings, create_app
from clora.serving.connections import guarded_protocol
from clora.serving.inference import LoadedLibrary

log = logging.getLogger("clora")


def check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 1-65535 (0: any free port), got {port!r}", field="port")


def make_server(library: LoadedLibrary, host: str, port: int, settings: ServeSettings = ServeSettings(),
                max_connections: int = 256, keep_alive_s: float = 5.0, max_client_connections: int | None = None):
    """A uvicorn ``Server`` for ``library`` (not started). Over ``max_connections`` open connections or
    requests, new requests get 503, as does one client's connection past ``max_client_connections``
    (default: a quarter of ``max_connections``, at least 1); an idle keep-alive connection is closed after
    ``keep_alive_s``, one whose headers do not arrive within the body timeout at once
    (``clora.serving.connections``)."""
    import uvicorn

    check_port(port)
    per_client = check_client_connections(max_client_connections, max_connections)
    protocol = guarded_protocol(settings.limits.body_timeout_s, settings.limits.max_header_bytes, per_client)
    config = uvicorn.Config(create_app(library, settings), host=host, port=port, log_level="warning",
                            access_log=False, limit_concurrency=max_connections, timeout_keep_alive=keep_alive_s,
                            http=protocol, lifespan="on")
    return uvicorn.Server(config)


def check_client_connections(per_client: int | None, max_connections: int) -> int:
    """The connections one client address may hold: ``per_client``, or a quarter of ``max_connections``."""
    if per_client is None:
        return max(max_connections // 4, 1)
    if isinstance(per_client, bool) or not isinstance(per_client, int) or not 1 <= per_client <= max_connections:
        raise ConfigError(f"connections per client must be 1 to the server's {max_connections}, got {per_client!r}",
                          field="max_client_connections")
    return per_client


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

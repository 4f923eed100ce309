"""Connection-level limits, in uvicorn's HTTP protocol itself (before any request exists):

- a request whose headers are not complete within ``header_timeout_s`` is closed: uvicorn
  times out only idle keep-alive connections, so a client sending half its headers
  (slowloris) would otherwise hold its connection for ever;
- request headers (request line included) over ``max_header_bytes`` are answered 431 and the
  connection closed, before the parser has buffered more than one read past the limit;
- one client address holds at most ``per_client`` open connections; one more is answered
  503 and closed, so a single client cannot take every slot of ``--max-connections``.

Refusals are JSON, as every other answer.
"""

from __future__ import annotations

import json
from collections import Counter

class HeadersTooLarge(Exception):
    """Raised from the parser's callback: the parser stops, and uvicorn calls ``send_400_response``."""


PHRASES = {431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response ``{"error": message}`` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {PHRASES[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def guarded_protocol(header_timeout_s: float, max_header_bytes: int, per_client: int):
    """uvicorn's HTTP protocol class with the limits above (one connection counter per server)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - without httptools uvicorn parses with h11 (its own 16 KiB limit)
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    open_by_client: Counter = Counter()

    class GuardedProtocol(Base):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._counted, self._in_headers, self._header_bytes, self._headers_completed = None, True, 0, 0
            self._too_large = False
            peer = transport.get_extra_info("peername")
            host = peer[0] if isinstance(peer, tuple) and peer else None
            if host is not None and open_by_client[host] >= per_client:
                self._refuse(503, f"this client already holds {per_client} open connections (the most one client "
                                  "may hold); reuse one, or wait")
                return
            if host is not None:
                open_by_client[host] += 1
                self._counted = host
            self._headers_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _refuse(self, status: int, message: str) -> None:
            if not self.transport.is_closing():
                self.transport.write(refusal(status, message))
                self.transport.close()

        def data_received(self, data):
            completed, was_in_headers = self._headers_completed, self._in_headers
            super().data_received(data)
            if self._headers_completed != completed or not was_in_headers:
                self._header_bytes = 0  # headers ended in this read, or it was body: the next headers count afresh
            elif self._in_headers and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse(431, f"request headers over {max_header_bytes} bytes")

        def on_headers_complete(self):
            self._in_headers = False
            self._headers_completed += 1
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > max_header_bytes:  # all of it came in one read: stop before a request exists
                self._too_large = True
                raise HeadersTooLarge
            super().on_headers_complete()

        def send_400_response(self, msg):  # uvicorn's answer to a parser error, ours among them
            if self._too_large:
                self._refuse(431, f"request headers over {max_header_bytes} bytes")
            else:
                super().send_400_response(msg)

        def on_message_complete(self):
            super().on_message_complete()
            self._in_headers = True  # a keep-alive connection's next request

        def _headers_late(self):
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            timer = getattr(self, "_headers_timer", None)
            if timer is not None:
                timer.cancel()
            if self._counted is not None:
                open_by_client[self._counted] -= 1
                if open_by_client[self._counted] <= 0:
                    del open_by_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

    return GuardedProtocol

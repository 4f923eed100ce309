"""What ``GET /health`` reports beyond the version: problems the server lives through without stopping.

A full disk is the usual one: answers go on, but what a server writes beside them (the
inbox's records, feedback) cannot be kept, and whoever watches ``/health`` must hear of it
rather than find out from lost data. A problem is set where it happens and cleared by the
next write of the same kind that succeeds.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("clora")


class Problems:
    """``{area: message}`` of the problems now standing (thread-safe: set from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, str] = {}

    def set(self, area: str, message: str) -> None:
        with self._lock:
            fresh = self._now.get(area) != message
            self._now[area] = message
        if fresh:  # once per new problem, not once per request
            log.warning("%s: %s", area, message)

    def clear(self, area: str) -> None:
        with self._lock:
            self._now.pop(area, None)

    def current(self) -> dict[str, str]:
        with self._lock:
            return dict(self._now)

"""Answers before connections: the event loop runs at a lower CPU priority than inference.

On one machine the server's threads share the CPUs: the inference thread (forward
passes) and the event loop thread (accepting connections, parsing requests, refusing bad
ones) with the worker threads it starts (trigger searches, reloads). A client that floods
the server with refused requests (bodies over the limit, 2 700 connections a second from
one client on loopback) kept the event loop busy and, under the scheduler's fair share,
halved the CPU left to the forward passes of everyone else: a normal request took 1.99x its
idle latency (median of six runs). With the event loop 10 nice steps below the inference
thread it took 1.15x (``examples/benchmarks/serve_attack.py``, docs/benchmarks.md).

Linux only: there a thread's nice value is its own and threads inherit it from the
thread that starts them, so the inference thread is started first and keeps priority 0.
Lowering a priority needs no privilege; raising one back would.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from clora.errors import ConfigError

log = logging.getLogger("clora")

MAX_NICE = 19


def check_nice(nice: int) -> None:
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= MAX_NICE:
        raise ConfigError(f"loop nice must be in 0-{MAX_NICE}, got {nice!r}", field="loop_nice")


def lower_this_thread(nice: int) -> bool:
    """Make the calling thread (and the threads it starts later) ``nice`` steps nicer; True if done.

    A no-op for 0, off Linux (elsewhere ``setpriority`` on a thread id would renice the whole
    process) and where the system refuses (logged, the server goes on at normal priority).
    """
    check_nice(nice)
    if nice == 0 or sys.platform != "linux":
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # pragma: no cover - a sandbox may forbid it
        log.warning("could not lower the event loop's priority (%s); serving at normal priority", exc)
        return False
    return True

"""A normal client's latency while attackers hit the server, against its latency on an idle server.

Attacks (each alone, then all together): bodies announced far over the size limit,
requests left half-sent (headers or body), and inputs built to make a trigger regex
backtrack (the library's first task carries the trigger ``regex:(a+)+$`` for the run).
The server's resident memory is sampled throughout. Prints JSON.

Each attacker is a process of its own (a thread would share the measuring client's GIL
and slow the client, not the server). By default (``--pin``, on machines with at least
two CPUs) the server runs on CPU 0 with one torch thread and the attackers and the client
on the other CPUs, as they would on other machines: what is measured is then what the
attack costs the server, not the attacker's own CPU burn on a shared core. ``--no-pin``
shares every CPU between all of them (the server with torch's default threads).

    clora run demo --out clora-runs/demo-orth
    python examples/benchmarks/serve_attack.py clora-runs/demo-orth/library
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import demo_texts, post, start_server  # noqa: E402

ATTACK_TRIGGER = "(a+)+$"


def with_attack_trigger(library: Path, into: Path) -> Path:
    """A copy of ``library`` whose first task carries ``ATTACK_TRIGGER`` (manifest metadata, not checksummed)."""
    shutil.copytree(library, into)
    for path in [into / "manifest.json", *sorted((into / "versions").glob("v*.json"))]:
        manifest = json.loads(path.read_text())
        manifest["tasks"][0].setdefault("triggers", {}).setdefault("regex", []).append(ATTACK_TRIGGER)
        path.write_text(json.dumps(manifest))
    return into


def oversized(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 52000000\r\n\r\n")
                for _ in range(50):  # keep pushing body bytes while the server refuses them
                    sock.sendall(b"x" * 65536)
        except OSError:
            pass


def half_sent(port: int, stop: threading.Event, connections: int = 200) -> None:
    held = []
    while not stop.is_set():
        while len(held) < connections and not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                body = len(held) % 2 == 0
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in" if body
                             else b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
                held.append(sock)
            except OSError:
                break
        time.sleep(0.2)
        held = [s for s in held if s.fileno() != -1]
    for sock in held:
        sock.close()


def regex_attack(port: int, stop: threading.Event) -> None:
    texts = ["a" * 27 + "!", "a" * 5000 + "!", "a" * 9999 + "!"]
    i = 0
    while not stop.is_set():
        try:
            post(port, texts[i % len(texts)])
        except OSError:
            pass
        i += 1


ATTACKS = {"oversized_body": [oversized], "half_sent": [half_sent], "regex": [regex_attack]}
ATTACKS["all_together"] = [f for fs in list(ATTACKS.values()) for f in fs]


def attacker_process(target, port: int, stop, cpus: set[int] | None) -> None:
    """Runs ``target(port, stop)`` in a process of its own (on ``cpus`` when given)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    target(port, stop)


def measure(port: int, texts: list[str], n: int) -> dict:
    latencies = []
    for text in texts[:n]:
        started = time.perf_counter()
        post(port, text)
        latencies.append(1000 * (time.perf_counter() - started))
    return {"median_ms": statistics.median(latencies), "max_ms": max(latencies)}


#: what each attack is, as docs/benchmarks.md and docs/serving.md name it
ATTACKS = {"oversized_body": "bodies announced at 52 MB, pushed until refused (a flood of 2 700 connections/s; "
                             "413 at once, connection closed)",
           "half_sent": "200 connections held half-sent (headers or body)",
           "regex": "inputs of up to 10 000 `a`s against the trigger `(a+)+$`",
           "all_together": "all three at once"}


def table(result: dict) -> str:
    """The docs' table: a normal request's median latency while each attack runs, its ratio to idle, and the
    CPU the server and the attacker spent per second."""
    idle = result["idle"]
    lines = ["| while | median ms | x idle | server CPU s/s | attacker CPU s/s |", "|---|---|---|---|---|",
             f"| idle | {idle['median_ms']:.1f} | 1.00 | {idle['server_cpu_per_s']:.2f} | - |"]
    for key, label in ATTACKS.items():
        row = result[key]
        lines.append(f"| {label} | {row['median_ms']:.1f} | {row['ratio_to_idle']:.2f} | {row['server_cpu_per_s']:.2f} "
                     f"| {row['attacker_cpu_per_s']:.2f} |")
    return "\n".join(lines)


CONFIGURATIONS = {"pin": "pinned, `--loop-nice 10` (the default)", "pinnice0": "pinned, `--loop-nice 0`",
                  "nopin": "not pinned (all on both cores, server with 2 torch threads), `--loop-nice 10`"}


def runs_table(runs: dict) -> str:
    """The repeated runs (serve_attack_runs.json): per configuration and attack, the ratio to idle as
    min-max (median) over the runs, then the memory the server grew by."""
    lines = ["| configuration | bodies over the limit | half-sent | regex inputs | all three |", "|---|---|---|---|---|"]
    for key, label in CONFIGURATIONS.items():
        cells = [f"{min(v):.2f}-{max(v):.2f} ({statistics.median(v):.2f})" for v in runs["ratio_to_idle"][key].values()]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    growth = [mb for runs_mb in runs["memory_growth_mb"].values() for mb in runs_mb]
    return "\n".join(lines) + f"\n\nThe server's memory grew by {min(growth):.1f}-{max(growth):.1f} MB in every run."


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", type=Path)
    ap.add_argument("--requests", type=int, default=40, help="normal requests per phase")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                    help="server on CPU 0 (one torch thread), attackers and client on the others (default: on "
                         "with 2+ CPUs)")
    ap.add_argument("--threads", type=int, default=None,
                    help="the server's OMP_NUM_THREADS (default: 1 when pinned, else torch's default)")
    ap.add_argument("--loop-nice", type=int, default=10, help="the server's --loop-nice (0: off)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp())
    library = with_attack_trigger(args.library, work / "library")
    texts = demo_texts(library, 200)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, others = ({cpus[0]}, set(cpus[1:])) if args.pin else (None, None)
    threads = args.threads or (1 if args.pin else None)
    server, port = start_server(library, 32, threads, ["--loop-nice", str(args.loop_nice)],
                                cpus=server_cpus)
    process = psutil.Process(server.pid)
    if others:
        os.sched_setaffinity(0, others)
    peak = {"rss": 0}
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            time.sleep(0.1)

    try:
        measure(port, texts, 10)  # warm-up
        idle_rss = process.memory_info().rss
        server_cpu, own_cpu, wall = sum(process.cpu_times()[:2]), time.process_time(), time.perf_counter()
        result = {"idle": measure(port, texts, args.requests)}
        wall = time.perf_counter() - wall
        result["idle"]["server_cpu_per_s"] = (sum(process.cpu_times()[:2]) - server_cpu) / wall
        result["idle"]["client_cpu_per_s"] = (time.process_time() - own_cpu) / wall
        threading.Thread(target=sample, daemon=True).start()
        # one attacking client each, as the acceptance line describes; then all three at once
        for name, workers in ATTACKS.items():
            stop = multiprocessing.Event()
            attackers = [multiprocessing.Process(target=attacker_process, args=(w, port, stop, others), daemon=True)
                         for w in workers]
            for a in attackers:
                a.start()
            time.sleep(1.0)  # let the attack build up
            cpu = lambda: sum(sum(psutil.Process(a.pid).cpu_times()[:2]) for a in attackers)  # noqa: E731
            server_cpu, own_cpu, attack_cpu = sum(process.cpu_times()[:2]), time.process_time(), cpu()
            wall = time.perf_counter()
            result[name] = measure(port, texts, args.requests)
            wall = time.perf_counter() - wall
            # CPU seconds per second of the phase: the server's, the attackers' and the measuring client's
            result[name]["server_cpu_per_s"] = (sum(process.cpu_times()[:2]) - server_cpu) / wall
            result[name]["attacker_cpu_per_s"] = (cpu() - attack_cpu) / wall
            result[name]["client_cpu_per_s"] = (time.process_time() - own_cpu) / wall
            result[name]["ratio_to_idle"] = result[name]["median_ms"] / result["idle"]["median_ms"]
            stop.set()
            for a in attackers:
                a.join(timeout=30)
                if a.is_alive():
                    a.kill()
        sampling.set()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            result["health_after"] = json.loads(response.read())["status"]
        result["memory_mb"] = {"idle": idle_rss / 2 ** 20, "peak": peak["rss"] / 2 ** 20,
                               "growth": (peak["rss"] - idle_rss) / 2 ** 20}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"benchmark": "serve_attack", "library": str(args.library), "pinned": args.pin,
                      "loop_nice": args.loop_nice, "threads": threads, "cpu_count": os.cpu_count(), **result}, indent=2))
    return result


if __name__ == "__main__":
    main()

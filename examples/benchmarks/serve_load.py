"""N concurrent clients against a real ``clora serve`` on loopback: batched against ``--max-batch 1``.

Each server runs in a process of its own; the clients are threads of this script, each
sending single-input ``POST /predict`` requests back to back for ``--seconds``. The two
servers are measured in alternating rounds (batched, unbatched, batched, ...) so that
machine noise falls on both; medians over the rounds are reported. Every answer is kept
and the two servers' answers to the same inputs are compared. Prints JSON.

    clora run demo --out clora-runs/demo-orth            # a MiniLM library of the demo's four tasks
    python examples/benchmarks/serve_load.py clora-runs/demo-orth/library --clients 16
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(library: Path, max_batch: int, threads: int | None, extra: list[str],
                 cpus: set[int] | None = None) -> tuple[subprocess.Popen, int]:
    """A ``clora serve`` process on a free port, once it answers /health; on ``cpus`` only when given (set
    before exec, so every thread the server starts inherits it)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    server = subprocess.Popen([sys.executable, "-m", "clora.cli.main", "serve", str(library), "--port", str(port),
                               "--max-batch", str(max_batch), "--device", "cpu", *extra], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return server, port
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {server.stderr.read() if server.poll() else 'timeout'}")
            time.sleep(0.3)


def post(port: int, text: str) -> dict:
    body = json.dumps({"inputs": [text]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"][0]


def load_round(port: int, texts: list[str], clients: int, seconds: float, send=None) -> dict:
    """``clients`` threads sending one input at a time for ``seconds`` (``send(port, text)``: ``post``, one
    ``/predict`` request); throughput and latency percentiles."""
    send = send or post
    latencies, answers, errors = [], {}, []
    lock, stop_at = threading.Lock(), time.perf_counter() + seconds

    def client(k: int):
        i = k
        while time.perf_counter() < stop_at:
            text = texts[i % len(texts)]
            started = time.perf_counter()
            try:
                answer = send(port, text)
            except OSError as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                answers[text] = answer
            i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    pct = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"requests": len(latencies), "errors": len(errors), "throughput_rps": len(latencies) / wall,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "answers": answers}


def mean_batch(port: int) -> float:
    """Inputs per forward pass so far, from the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        lines = response.read().decode().splitlines()
    value = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith("clora_batch_inputs_")}
    return value["clora_batch_inputs_sum"] / max(value["clora_batch_inputs_count"], 1.0)


def same_answers(a: dict, b: dict) -> dict:
    shared = sorted(set(a) & set(b))
    differ = [t for t in shared if (a[t]["task"], a[t]["prediction"], a[t]["source"])
              != (b[t]["task"], b[t]["prediction"], b[t]["source"])
              or abs(a[t]["confidence"] - b[t]["confidence"]) > 1e-5]
    return {"compared": len(shared), "different": len(differ), "examples": differ[:3]}


def demo_texts(library: Path, n: int) -> list[str]:
    from clora.data.loaders import load_referenced_task
    from clora.library.layout import read_manifest

    texts = []
    for entry in read_manifest(library)["tasks"]:
        if entry.get("data"):
            texts += [e.text for e in load_referenced_task(entry["data"]).test[: n // 4]]
    return texts or ["apple oven the recipe"]


def readme_sentence(result: dict) -> str:
    """The README's one line on batching."""
    answers = result["answers"]
    same = ("with the same answers" if answers["different"] == 0
            else f"{answers['different']} of {answers['compared']} answers differing")
    return (f"Batching gives {result['throughput_ratio']:.1f}x the throughput of answering one request at a time "
            f"with {result['clients']} clients on a {result['cpu_count']}-core CPU, {same} (`docs/benchmarks.md`).")


def table(result: dict) -> str:
    """docs/benchmarks.md's and docs/serving.md's table: each server's medians over the rounds."""
    lines = ["| server | requests/s | p50 ms | p90 ms | p99 ms | inputs per forward pass |", "|---|---|---|---|---|---|"]
    labels = {"batched": f"batched (`--max-batch {result['max_batch']}`, `--batch-wait-ms 5`)",
              "max_batch_1": "`--max-batch 1`"}
    for key, label in labels.items():
        row = result[key]
        lines.append(f"| {label} | {row['throughput_rps']:.1f} | {row['p50_ms']:.0f} | {row['p90_ms']:.0f} | "
                     f"{row['p99_ms']:.0f} | {result['mean_batch_inputs'][key]:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", type=Path)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=200, help="distinct test inputs sent round robin")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the servers")
    ap.add_argument("--serve-args", default="", help="more `clora serve` options for both servers, e.g. '--batch-wait-ms 5'")
    args = ap.parse_args(argv)
    texts = demo_texts(args.library, args.inputs)
    extra = args.serve_args.split()
    servers = {"batched": start_server(args.library, args.max_batch, args.threads, extra),
               "max_batch_1": start_server(args.library, 1, args.threads, extra)}
    rounds = {name: [] for name in servers}
    try:
        for name, (_, port) in servers.items():  # warm-up: first requests load lazily
            load_round(port, texts[:8], 2, 1.0)
        for _ in range(args.rounds):
            for name, (_, port) in servers.items():
                rounds[name].append(load_round(port, texts, args.clients, args.seconds))
        batch_sizes = {name: mean_batch(port) for name, (_, port) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms")}
               | {"requests": sum(r["requests"] for r in rs), "errors": sum(r["errors"] for r in rs)}
               for name, rs in rounds.items()}
    answers = {name: {t: a for r in rs for t, a in r["answers"].items()} for name, rs in rounds.items()}
    result = {"benchmark": "serve_load", "library": str(args.library), "clients": args.clients,
              "seconds_per_round": args.seconds, "rounds": args.rounds, "max_batch": args.max_batch,
              "serve_args": extra, "cpu_count": os.cpu_count(), **summary, "mean_batch_inputs": batch_sizes,
              "throughput_ratio": summary["batched"]["throughput_rps"] / summary["max_batch_1"]["throughput_rps"],
              "p99_ratio": summary["batched"]["p99_ms"] / summary["max_batch_1"]["p99_ms"],
              "answers": same_answers(answers["batched"], answers["max_batch_1"])}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

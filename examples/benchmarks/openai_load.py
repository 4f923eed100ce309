"""The OpenAI-compatible endpoint against ``/predict`` on one ``clora serve``: throughput side by side.

One batched server; N client threads send single-input requests back to back, in alternating
rounds to ``POST /predict`` and to ``POST /v1/completions`` with ``model: auto`` (so machine
noise falls on both); medians over the rounds. Every answer is kept, and the two endpoints'
answers to the same inputs are compared. Prints JSON (``--json`` writes it).

    clora run demo --out clora-runs/demo-orth
    python examples/benchmarks/openai_load.py clora-runs/demo-orth/library --clients 16 \\
        --json docs/benchmarks-data/openai_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import demo_texts, load_round, mean_batch, start_server  # noqa: E402


def post_completion(port: int, text: str) -> dict:
    """One ``/v1/completions`` request; its answer in ``/predict``'s shape (prediction, task, source)."""
    body = json.dumps({"model": "auto", "prompt": text}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        data = json.loads(response.read())
    route = data["clora"]["routes"][0]
    return {"prediction": data["choices"][0]["text"], "task": route["task"], "source": route["source"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", type=Path)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per endpoint, alternating")
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the server")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    texts = demo_texts(args.library, args.inputs)
    server, port = start_server(args.library, 32, args.threads, [])
    senders = {"predict": None, "openai": post_completion}
    rounds = {name: [] for name in senders}
    try:
        for name, send in senders.items():  # warm-up
            load_round(port, texts[:8], 2, 1.0, send=send)
        for _ in range(args.rounds):
            for name, send in senders.items():
                rounds[name].append(load_round(port, texts, args.clients, args.seconds, send=send))
        batch = mean_batch(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in ("throughput_rps", "p50_ms", "p99_ms")}
               | {"requests": sum(r["requests"] for r in rs), "errors": sum(r["errors"] for r in rs),
                  "rounds_rps": [round(r["throughput_rps"], 2) for r in rs]}
               for name, rs in rounds.items()}
    answers = {name: {t: a for r in rs for t, a in r["answers"].items()} for name, rs in rounds.items()}
    shared = sorted(set(answers["predict"]) & set(answers["openai"]))
    differ = [t for t in shared if any(answers["predict"][t][k] != answers["openai"][t][k]
                                       for k in ("prediction", "task", "source"))]
    result = {"benchmark": "openai_load", "library": str(args.library), "clients": args.clients,
              "seconds_per_round": args.seconds, "rounds": args.rounds, "cpu_count": os.cpu_count(), **summary,
              "mean_batch_inputs": batch,
              "throughput_ratio_openai_to_predict": summary["openai"]["throughput_rps"]
              / summary["predict"]["throughput_rps"],
              "answers": {"compared": len(shared), "different": len(differ), "examples": differ[:3]}}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

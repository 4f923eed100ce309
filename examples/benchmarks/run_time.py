"""Training time of whole runs, side by side in one process: ``inc`` against ``orth`` (and its private adapters).

Each method runs the same stream with the same settings, one after another, on the threads given (one by
default, so that the machine's other work moves both alike). Reported per run: ``train_s`` (everything a
task's training takes: the optimiser steps, orth's frame start and end-of-task subspace, and the private
adapters' steps), the private adapters' part of it, and the ratio of each run's ``train_s`` to the first
run's. Evaluation is not training and is left out.

    python examples/benchmarks/run_time.py cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark \\
        --max-train 1000 --max-test 500 --run inc --run orth --run orth:private_rank=8 \\
        --json docs/benchmarks-data/run_time.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json  # noqa: E402


def parse_run(text: str) -> tuple[str, dict]:
    """``method[:knob=value,...]`` -> ``(method, settings)``; values are read as int, float or text."""
    method, _, rest = text.partition(":")
    settings = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        settings[key] = value
    return method, settings


def table(result: dict) -> str:
    """One row per run: train_s, the private adapters' share, the ratio to the first run."""
    lines = ["| run | training (s) | of it, private adapters (s) | vs first |", "|---|---|---|---|"]
    first = result["runs"][0]["train_s"]
    for r in result["runs"]:
        private = "" if r["private_s"] is None else f"{r['private_s']:.0f}"
        lines.append(f"| {r['run']} | {r['train_s']:.0f} | {private} | {r['train_s'] / first:.2f}x |")
    return "\n".join(lines + ["", f"{result['stream']}, {result['max_train']} / {result['max_test']}, seed "
                                  f"{result['seed']}, {result['machine']['threads']} thread(s), one run after another."])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--run", action="append", required=True, help="method[:knob=value,...], repeatable")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from clora.config import RunConfig
    from clora.workflows.run import run_stream

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, text in enumerate(args.run):
            method, settings = parse_run(text)
            extra = {"model": args.model} if args.model else {}
            report = run_stream(RunConfig(stream=args.stream, data_dir=args.data_dir, method=method, settings=settings,
                                          max_train=args.max_train, max_test=args.max_test, seed=args.seed,
                                          out=Path(tmp) / str(k), progress=False, **extra))
            runs.append({"run": text, "train_s": report.timing["train_s"], "private_s": report.timing.get("private_s"),
                         "eval_s": report.timing["eval_s"]})
    result = {"benchmark": "run_time", "stream": args.stream, "max_train": args.max_train, "max_test": args.max_test,
              "seed": args.seed, "machine": machine(), "runs": runs}
    print(table(result))
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()

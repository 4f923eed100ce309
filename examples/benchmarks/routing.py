"""Routing on small tasks: clora's router against PEFT's Arrow, on the same libraries.

For each size N a library is trained from a stream with every task capped at N training
examples (``clora run --max-train N --epochs 1``, method orth by default), or taken as it is with
``--library N=PATH``. Each task's test inputs are then answered by

- clora's router (``load_library(router="lda")``): triggers, the learned trigger, fallback;
- PEFT's Arrow (``load_library(router="arrow")``): per-token mixing of the task adapters,
  the task with the largest mean weight counting as the route; it never falls back;

and, for both: the share of test inputs routed to their own task, falling back, routed
to another task, the routed accuracy (the answers' accuracy), and the share of inputs of
an unseen domain (cooking instructions no stream has, ``clora.testing.small_tasks``)
that fall back. The stream ``small`` is the user's case: support tickets, product
reviews and news (``clora.testing.small_tasks``). Prints a table; ``--json`` writes all.

    python examples/benchmarks/routing.py small --sizes 30,60,200,1000
    python examples/benchmarks/routing.py cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark \\
        --sizes 30,60,200 --library 1000=runs/cl4-orth-routed/library
"""

import argparse
import json
import os
import time
from pathlib import Path

from clora.config import RunConfig
from clora.data.loaders import load_referenced_task
from clora.library import read_manifest
from clora.routing.shares import routing_shares
from clora.serving.inference import load_library
from clora.testing.small_tasks import TASKS, small_task, unseen_inputs
from clora.workflows.run import run_stream


def small_stream(folder: Path, n_test: int) -> Path:
    """The user's three small tasks as jsonl files and a stream (train pool of 1000, ``n_test`` test)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["name: small", "tasks:"]
    for task in TASKS:
        train, test = small_task(task, n_train=1000, n_fresh=n_test, seed=0)
        (folder / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
        (folder / f"{task}-test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
        lines.append(f"  - {{name: {task}, format: jsonl, path: {task}.jsonl, test_path: {task}-test.jsonl}}")
    (folder / "small.yaml").write_text("\n".join(lines) + "\n")
    return folder / "small.yaml"


def build(args, size: int, out: Path) -> Path:
    if (out / "library" / "manifest.json").is_file():
        return out / "library"
    run_stream(RunConfig(stream=str(args.stream), data_dir=args.data_dir, model=args.model, out=out, max_train=size,
                         max_test=args.max_test, epochs=1, seed=0, method=args.method, progress=False))
    return out / "library"


def measure(library: Path, router: str, tests: dict, unseen: list[str]) -> dict:
    started = time.perf_counter()
    loaded = load_library(library, router=router)
    texts, expected, targets = [], [], []
    for name, task in tests.items():
        texts += [e.text for e in task.test]
        expected += [name] * len(task.test)
        targets += [e.target for e in task.test]
    answers = loaded.predict(texts)
    shares = routing_shares(answers, expected)
    unseen_shares = routing_shares(loaded.predict(unseen))
    return {"own": shares.own / shares.total, "fallback": shares.fallback / shares.total,
            "misrouted": shares.misrouted / shares.total,
            "routed_accuracy": sum(a.prediction == t for a, t in zip(answers, targets)) / len(targets),
            "unseen_fallback": unseen_shares.fallback / unseen_shares.total, "inputs": shares.total,
            "seconds": time.perf_counter() - started}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", help="a stream (shipped name or YAML), or 'small' for the user's three tasks")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--method", default="orth", help="the libraries' method (one adapter per task)")
    parser.add_argument("--sizes", default="30,60,200,1000")
    parser.add_argument("--max-test", type=int, default=200)
    parser.add_argument("--library", action="append", default=[], metavar="LABEL=PATH",
                        help="also measure this library (LABEL: a size N to skip training it, or any name)")
    parser.add_argument("--out", type=Path, default=Path("runs/routing-bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.stream == "small":
        args.stream = small_stream(args.out / "small-data", args.max_test)
    given = {k: Path(v) for k, v in (item.split("=", 1) for item in args.library)}
    sizes = [str(n) for n in sorted(int(s) for s in args.sizes.split(",") if s)]
    unseen = unseen_inputs(100)
    results = {}
    for size in sizes + [k for k in given if k not in sizes]:
        library = given.get(size) or build(args, int(size), args.out / f"{Path(str(args.stream)).stem}-{size}")
        tests = {t["name"]: load_referenced_task(t["data"]) for t in read_manifest(library)["tasks"]}
        results[size] = {router: measure(library, router, tests, unseen) for router in ("lda", "arrow")}
        print(f"{size}: " + "; ".join(f"{r}: own {v['own']:.1%} fallback {v['fallback']:.1%} misrouted "
                                        f"{v['misrouted']:.2%} accuracy {v['routed_accuracy']:.1%} unseen fallback "
                                        f"{v['unseen_fallback']:.1%}" for r, v in results[size].items()), flush=True)
    result = {"stream": str(args.stream), "results": results}
    print("\n" + table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _library_label(stream: str, size: str) -> str:
    if size == "demo":
        return "demo (synthetic, 600)"
    return f"{'CL-4' if 'cl-benchmark' in stream else 'small'}, {size}"


def table(result: dict) -> str:
    """docs/routing.md's table of one benchmark run (``--json``): each library's routers side by side."""
    lines = ["| library (examples per task) | router | own task | fallback | misrouted | routed accuracy | "
             "unseen domain falls back |", "|---|---|---|---|---|---|---|"]
    for size, by_router in result["results"].items():
        for router, v in by_router.items():
            own = f"**{v['own']:.1%}**" if router == "lda" else f"{v['own']:.1%}"
            accuracy = f"**{v['routed_accuracy']:.1%}**" if router == "lda" else f"{v['routed_accuracy']:.1%}"
            lines.append(f"| {_library_label(result['stream'], size)} | {router} | {own} | {v['fallback']:.1%} | "
                         f"{v['misrouted']:.2%} | {accuracy} | {v['unseen_fallback']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""A library growing to 100 tasks: list and load time, add-task phases, memory, capacity, modes.

A small random BERT (hidden 256, 4 layers; rank 2 per task, subspace of the adapters'
own directions, so 100 tasks use 200 of 256 input directions) gets one synthetic task
from ``clora run``, then 99 more by ``add-task`` (1 epoch, 16 training and 8 test
examples each; every earlier task is re-evaluated, as add-task always does). At the
checkpoints it measures, each a median of ``--repeats``:

- ``clora library list`` as a user runs it (a fresh process, wall time);
- ``load_library`` time in a fresh process: cold (the first load, importing
  transformers' model code) and warm (a second load), and the resident memory the
  second loaded copy adds;
- one batch of 64 inputs answered in each mode (routed, oracle, sum, base);
- the largest share of any module's input dimension the subspace reserves.

Every add-task reports its phases (load, train, eval, commit: staging the files, the
router statistics, the fsyncs and renames); the commit-time growth from 10 to 100
tasks is the median over the 5 add-tasks ending at each. Prints JSON.

    python examples/benchmarks/library_scale.py --tasks 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine, median_ms, print_json, tiny_model  # noqa: E402

from clora.workflows.add_task import AddTaskRequest, add_task  # noqa: E402
from clora.config import RunConfig  # noqa: E402
from clora.workflows.run import run_stream  # noqa: E402
from clora.data.synthetic import DOMAINS, synthetic_examples  # noqa: E402

MEMORY = """
import json, sys, time, psutil
from clora.serving.inference import load_library
rss = lambda: psutil.Process().memory_info().rss / 2**20
t0 = time.perf_counter(); first = load_library(sys.argv[1]); t1 = time.perf_counter(); r1 = rss()
second = load_library(sys.argv[1]); t2 = time.perf_counter()
print(json.dumps({"cold_s": t1 - t0, "warm_s": t2 - t1, "library_mb": rss() - r1}))
"""

def task_files(root: Path, i: int) -> tuple[Path, Path, list[str]]:
    domains = list(DOMAINS)
    train, test, labels = synthetic_examples(f"task{i}", {"domain": domains[i % len(domains)], "shift": i,
                                                     "n_train": 16, "n_test": 8})
    paths = []
    for name, rows in (("train", train), ("test", test)):
        path = root / "data" / f"task{i}" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"sentence": e.text, "label": e.target}) + "\n" for e in rows))
        paths.append(path)
    return paths[0], paths[1], list(labels)


def first_task(root: Path, model: Path, rank: int) -> Path:
    stream = root / "first.yaml"
    stream.write_text("name: scale\ntasks:\n  - {name: task0, format: synthetic, "
                      "options: {domain: cooking, shift: 0, n_train: 16, n_test: 8}}\n")
    run_stream(RunConfig(stream=str(stream), out=root / "run", model=str(model), rank=rank, epochs=1,
                         settings={"subspace": "adapters"}, progress=False, device="cpu"))
    return root / "run" / "library"


def checkpoint(library: Path, repeats: int) -> dict:
    """List time, load time and memory (fresh processes), per-mode batch time, capacity."""
    from clora.serving.inference import load_library
    from clora.library.layout import read_manifest
    from clora.library.ops import capacity

    lists = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(["clora", "library", "list", str(library)], check=True, capture_output=True)
        lists.append(time.perf_counter() - started)
    loads = [json.loads(subprocess.run([sys.executable, "-c", MEMORY, str(library)], check=True,
                                       capture_output=True, text=True).stdout) for _ in range(max(1, repeats // 2))]
    lib = load_library(library)
    names = [t["name"] for t in lib.tasks()]
    texts = [f"apple oven recipe {n}" for n in names] * (64 // len(names) + 1)
    texts = texts[:64]
    ids = (names * (64 // len(names) + 1))[:64]
    modes = {"routed": lambda: lib.predict(texts), "oracle": lambda: lib.predict(texts, mode="oracle", task=ids),
             "sum": lambda: lib.predict(texts, mode="sum"), "base": lambda: lib.predict(texts, mode="base")}
    times = interleaved(modes, repeats, 1)
    manifest = read_manifest(library)
    used = max(c["reserved"] / c["d_in"] for c in capacity(library, manifest).values())
    return {"tasks": len(names), "list_s": statistics.median(lists),
            "load_cold_s": statistics.median(x["cold_s"] for x in loads),
            "load_warm_s": statistics.median(x["warm_s"] for x in loads),
            "library_mb": statistics.median(x["library_mb"] for x in loads),
            "batch64_ms": {m: median_ms(t) for m, t in times.items()}, "capacity_used": used}


def table(result: dict) -> str:
    """The markdown tables docs/benchmarks.md shows: the checkpoints, add-task's phases in three windows, the
    commit growth."""
    lines = ["| tasks | `library list` s | load cold s | load warm s | MB per loaded copy | routed ms | oracle ms | "
             "sum ms | base ms | capacity used |", "|---" * 10 + "|"]
    for c in result["checkpoints"]:
        ms = c["batch64_ms"]
        lines.append(f"| {c['tasks']} | {c['list_s']:.2f} | {c['load_cold_s']:.1f} | {c['load_warm_s']:.2f} | "
                     f"{c['library_mb']:.1f} | {ms['routed']:.0f} | {ms['oracle']:.0f} | {ms['sum']:.0f} | "
                     f"{ms['base']:.0f} | {100 * c['capacity_used']:.1f}% |")
    lines += ["", "add-task phases, medians over the add-tasks ending in the window (s):", "",
              "| library size after add-task | load | train | eval | commit | whole call |", "|---" * 6 + "|"]
    last = max(a["tasks_after"] for a in result["add_task"])
    for low, high in ((6, 10), (last // 2 - 5, last // 2 + 5), (last - 4, last)):
        window = [a for a in result["add_task"] if low <= a["tasks_after"] <= high]
        med = {k: statistics.median(a[k] for a in window) for k in ("load_s", "train_s", "eval_s", "commit_s",
                                                                      "total_s")}
        lines.append(f"| {low} to {high} | {med['load_s']:.3f} | {med['train_s']:.3f} | {med['eval_s']:.3f} | "
                     f"**{med['commit_s']:.3f}** | {med['total_s']:.2f} |")
    if "commit_growth_10_to_100" in result:
        lines += ["", f"Commit time, median of the 5 add-tasks ending at 10 and at 100 tasks: "
                      f"{result['commit_s_at_10']:.3f} s and {result['commit_s_at_100']:.3f} s, "
                      f"**{result['commit_growth_10_to_100']:.2f}x**."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--rank", type=int, default=2)
    ap.add_argument("--checkpoints", default="1,10,25,50,100")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="clora-scale-"))
    model = tiny_model("bert", root / "model")
    library = first_task(root, model, args.rank)
    checkpoints = {int(x) for x in args.checkpoints.split(",")}
    adds, points = [], []
    if 1 in checkpoints:
        points.append(checkpoint(library, args.repeats))
    for i in range(1, args.tasks):
        train, test, labels = task_files(root, i)
        started = time.perf_counter()
        result = add_task(AddTaskRequest(library=library, name=f"task{i}", train=train, test=test, labels=labels,
                                         epochs=1, progress=False, device="cpu"))
        adds.append({"tasks_after": i + 1, "total_s": time.perf_counter() - started, **result["timing"]})
        print(f"task {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in adds[-1].items() if k != "tasks_after"),
              file=sys.stderr)
        if i + 1 in checkpoints:
            points.append(checkpoint(library, args.repeats))
            print(json.dumps(points[-1]), file=sys.stderr)

    def commit_near(n: int) -> float:
        return statistics.median(a["commit_s"] for a in adds if n - 5 < a["tasks_after"] <= n)

    result = {"benchmark": "library_scale", "machine": machine(), "rank": args.rank, "checkpoints": points,
              "add_task": adds}
    if args.tasks >= 100:
        result["commit_s_at_10"], result["commit_s_at_100"] = commit_near(10), commit_near(100)
        result["commit_growth_10_to_100"] = result["commit_s_at_100"] / result["commit_s_at_10"]
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()

"""Plots for docs/benchmarks.md from the benchmarks' JSON output.

    python examples/benchmarks/plot_benchmarks.py --train-step train_step.json \
        --library-scale library_scale.json --out docs/img
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_train_step(result: dict, out: Path) -> Path:
    """Median step time per stream position, one line per contender."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    positions = [row["position"] for row in result["positions"]]
    for name in result["positions"][0]["median_ms"]:
        ax.plot(positions, [row["median_ms"][name] for row in result["positions"]], marker="o", label=name)
    ax.set_xticks(positions)
    ax.set_xlabel("position in the stream (frozen earlier adapters = position - 1)")
    ax.set_ylabel("median ms per training step")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result['model']}: batch {result['batch_size']}, rank {result['rank']}")
    ax.legend()
    fig.tight_layout()
    path = out / f"train_step_{Path(result['model']).name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_library_scale(result: dict, out: Path) -> Path:
    """add-task phases against library size; batch time per mode at the checkpoints."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    sizes = [a["tasks_after"] for a in result["add_task"]]
    for phase in ("load_s", "train_s", "eval_s", "commit_s"):
        left.plot(sizes, [a[phase] for a in result["add_task"]], label=phase.removesuffix("_s"))
    left.set_xlabel("tasks in the library after add-task")
    left.set_ylabel("seconds")
    left.set_title("add-task phases")
    left.legend()
    points = result["checkpoints"]
    for mode in points[0]["batch64_ms"]:
        right.plot([p["tasks"] for p in points], [p["batch64_ms"][mode] for p in points], marker="o", label=mode)
    right.set_xlabel("tasks in the library")
    right.set_ylabel("median ms per batch of 64")
    right.set_ylim(bottom=0)
    right.set_title("answering a batch, per mode")
    right.legend()
    fig.tight_layout()
    path = out / "library_scale.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-step", type=Path, action="append", default=[])
    ap.add_argument("--library-scale", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [plot_train_step(json.loads(p.read_text()), args.out) for p in args.train_step]
    if args.library_scale:
        paths.append(plot_library_scale(json.loads(args.library_scale.read_text()), args.out))
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()

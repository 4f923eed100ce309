"""The report of a run: ``report.json`` (DESIGN.md contract), ``report.md``, CSVs, heatmaps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from clora.metrics import summarize

MODE_NOTES = {
    "oracle": "each task's input runs in the snapshot in which that task was learnt",
    "sum": "every adapter learnt so far is active (task-agnostic)",
    "routed": "the router (triggers, then the learned LDA trigger over the tasks learnt so far) picks each "
              "input's snapshot; unsure inputs fall back to every adapter",
}


def oracle_matrix(after: list[list[float]], keeps_snapshots: bool) -> list[list[float]]:
    """Oracle accuracies from the per-step evaluations ``after[j][i]`` (snapshot j+1 on task i).

    Task i is served by the snapshot it was learnt in, i.e. ``after[min(i, j)][i]``, when
    the method keeps earlier adapters unchanged; otherwise only the current state exists
    and oracle equals sum.
    """
    if not keeps_snapshots:
        return [list(row) for row in after]
    return [[after[min(i, j)][i] for i in range(len(row))] for j, row in enumerate(after)]


def build_report(*, stream: str, method: str, model: str, tasks: list[str], base: list[float],
                 matrices: dict[str, list[list[float]]], overlap: float | None, timing: dict,
                 extra: dict | None = None) -> dict:
    """The report dict: one block per mode with its matrix and metrics (FWT against ``base``)."""
    report = {"stream": stream, "method": method, "model": model, "tasks": list(tasks),
              "base_accuracy": [float(b) for b in base],
              "modes": {mode: summarize(m, base) for mode, m in matrices.items()},
              "overlap": overlap, "timing": timing}
    report.update(extra or {})
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report_markdown(report: dict) -> str:
    """A readable summary: metrics per mode and each accuracy matrix, in percent."""
    tasks = report["tasks"]
    overlap = "n/a (one adapter)" if report["overlap"] is None else f"{report['overlap']:.2e}"
    lines = [f"# clora run: {report['stream']} / {report['method']}", "",
             f"- model: `{report['model']}`", f"- tasks (in order): {', '.join(tasks)}",
             f"- overlap (max principal cosine between adapters): {overlap}",
             f"- time: train {report['timing']['train_s']:.1f} s, eval {report['timing']['eval_s']:.1f} s", ""]
    settings = report.get("settings")
    if settings:
        lines += ["settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), ""]
    lines += ["## Metrics (%)", "", "| mode | AA | BWT | forgetting | FWT |", "|---|---|---|---|---|"]
    for mode, block in report["modes"].items():
        lines.append(f"| {mode} | {_pct(block['average_accuracy'])} | {_pct(block['bwt'])} | "
                     f"{_pct(block['forgetting'])} | {_pct(block['fwt'])} |")
    lines += ["", "Base model (no adapter): " + ", ".join(f"{t} {_pct(b)}" for t, b in zip(tasks, report["base_accuracy"])), ""]
    for mode, block in report["modes"].items():
        lines += [f"## Accuracy matrix, {mode} (%)", "", MODE_NOTES.get(mode, ""), "",
                  "| after \\ on | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        for name, row in zip(tasks, block["accuracy_matrix"]):
            lines.append(f"| {name} | " + " | ".join(_pct(x) for x in row) + " |")
        lines.append("")
        if "routing_confusion" in block:
            lines += routing_markdown(block)
    for note in report.get("notes", []):
        lines.append(f"- note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def routing_markdown(block: dict) -> list[str]:
    """Routing accuracy and the confusion matrix (rows: true task; columns: routed to)."""
    confusion = block["routing_confusion"]
    columns = list(next(iter(confusion.values())))
    lines = [f"Routing accuracy after the last task: {_pct(block['routing_accuracy'])}% of test inputs "
             "go to their own task.", "", "| task \\ routed to | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, counts in confusion.items():
        lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return lines + [""]


def write_matrix_csv(path: Path, tasks: list[str], matrix: list[list[float]]) -> None:
    """Rows = after training task j, columns = evaluated task i; fractions in [0, 1]."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["after", *tasks])
        for name, row in zip(tasks, matrix):
            writer.writerow([name, *(f"{x:.6f}" for x in row)])


def write_heatmap(path: Path, tasks: list[str], matrix: list[list[float]], title: str) -> None:
    """A PNG heatmap of the accuracy matrix with the values printed in percent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 1.1 * len(tasks) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_title(title)
    for j, row in enumerate(matrix):
        for i, value in enumerate(row):
            ax.text(i, j, f"{100 * value:.0f}", ha="center", va="center",
                    color="white" if value < 0.6 else "black", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report_files(folder: Path, report: dict) -> None:
    """Write report.json, report.md and, per mode, accuracy_<mode>.csv and heatmap_<mode>.png."""
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(report_markdown(report), encoding="utf-8")
    for mode, block in report["modes"].items():
        write_matrix_csv(folder / f"accuracy_{mode}.csv", report["tasks"], block["accuracy_matrix"])
        write_heatmap(folder / f"heatmap_{mode}.png", report["tasks"], block["accuracy_matrix"],
                      f"{report['stream']} / {report['method']} / {mode}")

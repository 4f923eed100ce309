"""The report of a run: the :class:`Report` that ``run_stream`` returns and ``report.json`` holds.

``Report.to_dict()`` is exactly ``report.json`` (the contract in ``docs/report-format.md``);
``Report.from_dict`` reads one back, keeping keys it does not know. ``report.md`` is
``report_markdown(report)``; the CSVs and heatmaps are written by ``clora.evaluation.report_files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clora.adapters.capacity import CapacityRow, capacity_markdown
from clora.evaluation.metrics import summarize

MODE_NOTES = {
    "oracle": "each task's input runs in the snapshot in which that task was learnt",
    "sum": "every adapter learnt so far is active (task-agnostic)",
    "routed": "the router (triggers, then the learned LDA trigger over the tasks learnt so far) picks each "
              "input's snapshot; unsure inputs fall back to every adapter",
}
_MODE_KEYS = ("accuracy_matrix", "average_accuracy", "bwt", "forgetting", "fwt")
_REPORT_KEYS = ("stream", "method", "model", "tasks", "task_metrics", "base_accuracy", "modes", "overlap", "timing",
                "settings", "training", "subspace", "capacity", "notes")


@dataclass
class ModeResult:
    """One mode's accuracy matrix and the metrics derived from it (``None``: not defined).

    ``extra`` holds mode-specific results, e.g. routed mode's ``routing_accuracy`` and
    ``routing_confusion``.
    """

    accuracy_matrix: list[list[float]]
    average_accuracy: float
    bwt: float | None
    forgetting: float | None
    fwt: float | None
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, matrix: list[list[float]], base: list[float]) -> "ModeResult":
        """The metrics of ``matrix`` with FWT against the base accuracies ``base``."""
        return cls(**summarize(matrix, base))

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in _MODE_KEYS}, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> "ModeResult":
        return cls(**{k: data.get(k) for k in _MODE_KEYS}, extra={k: v for k, v in data.items() if k not in _MODE_KEYS})

    def __getitem__(self, key: str):
        """``block["bwt"]``: the report.json view, so code written against the dict keeps working."""
        return self.to_dict()[key]


@dataclass
class Report:
    """What a run measured; ``to_dict()`` is ``report.json``.

    ``out`` (the run folder) and ``main_process`` (False in the helper processes of an
    ``accelerate launch``, which write nothing) describe this invocation and are not
    written. ``extra`` keeps report keys this version does not know.
    """

    stream: str
    method: str
    model: str
    tasks: list[str]
    base_accuracy: list[float]
    modes: dict[str, ModeResult]
    overlap: float | None
    timing: dict[str, float]
    #: the metric of each task's scores (``accuracy``; a generation task's ``exact_match``, ``f1``, ``rouge_l``)
    task_metrics: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    training: list[dict] = field(default_factory=list)
    subspace: dict = field(default_factory=dict)
    #: orth: per task, ``{"task", "reserved": {module: n}, "free_after": {module: n}}`` (clora.adapters.capacity)
    capacity: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    out: Path | None = None
    main_process: bool = True

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in _REPORT_KEYS}
        data["modes"] = {mode: block.to_dict() for mode, block in self.modes.items()}
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        known = {k: data[k] for k in _REPORT_KEYS if k in data}
        known["modes"] = {mode: ModeResult.from_dict(block) for mode, block in (data.get("modes") or {}).items()}
        known.setdefault("overlap", None)
        known.setdefault("timing", {})
        known.setdefault("task_metrics", ["accuracy"] * len(known.get("tasks", [])))  # reports before generation
        return cls(**known, extra={k: v for k, v in data.items() if k not in _REPORT_KEYS})

    def __getitem__(self, key: str):
        """``report["modes"]``: the report.json view, so code written against the dict keeps working."""
        return self.to_dict()[key]


def oracle_matrix(after: list[list[float]], keeps_snapshots: bool,
                  answered: dict[int, float] | None = None) -> list[list[float]]:
    """Oracle accuracies from the per-step evaluations ``after[j][i]`` (snapshot j+1 on task i).

    Task i is served by the snapshot it was learnt in, i.e. ``after[min(i, j)][i]``, when
    the method keeps earlier adapters unchanged; otherwise only the current state exists
    and oracle equals sum. ``answered[i]``: task i in the adapters that answer it, where they
    are more than snapshot i+1 (its private adapter), in place of ``after[i][i]``.
    """
    if not keeps_snapshots:
        return [list(row) for row in after]
    answered = answered or {}
    return [[answered.get(i, after[i][i]) if i <= j else after[j][i] for i in range(len(row))]
            for j, row in enumerate(after)]


def build_report(*, stream: str, method: str, model: str, tasks: list[str], base: list[float],
                 matrices: dict[str, list[list[float]]], overlap: float | None, timing: dict, **fields) -> Report:
    """A :class:`Report`: one block per mode with its matrix and metrics (FWT against ``base``)."""
    return Report(stream=stream, method=method, model=model, tasks=list(tasks),
                  base_accuracy=[float(b) for b in base],
                  modes={mode: ModeResult.of(m, base) for mode, m in matrices.items()},
                  overlap=overlap, timing=timing, **fields)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report_markdown(report: Report | dict) -> str:
    """A readable summary: metrics per mode and each accuracy matrix, in percent."""
    report = report.to_dict() if isinstance(report, Report) else report
    tasks = report["tasks"]
    overlap = "n/a (one adapter)" if report["overlap"] is None else f"{report['overlap']:.2e}"
    metrics = report.get("task_metrics") or ["accuracy"] * len(tasks)
    scored = ", ".join(f"{t} ({m})" for t, m in zip(tasks, metrics))
    lines = [f"# clora run: {report['stream']} / {report['method']}", "",
             f"- model: `{report['model']}`", f"- tasks (in order, with the metric of their scores): {scored}",
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
        title = "Accuracy" if set(metrics) == {"accuracy"} else "Score"
        lines += [f"## {title} matrix, {mode} (%)", "", MODE_NOTES.get(mode, ""), "",
                  "| after \\ on | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        for name, row in zip(tasks, block["accuracy_matrix"]):
            lines.append(f"| {name} | " + " | ".join("-" if x is None else _pct(x) for x in row) + " |")
        lines.append("")
        if "routing_confusion" in block:
            lines += routing_markdown(block)
    if report.get("capacity"):
        d_in = {name: info["d_in"] for name, info in report["subspace"].items()}
        rows = [CapacityRow(r["task"], r["reserved"], r["free_after"]) for r in report["capacity"]]
        lines += ["## Capacity of the reserved subspace", ""] + capacity_markdown(rows, d_in)
    for note in report.get("notes", []):
        lines.append(f"- note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def routing_markdown(block: dict) -> list[str]:
    """Routing accuracy and the confusion matrix (rows: true task; columns: routed to)."""
    confusion = block["routing_confusion"]
    columns = list(next(iter(confusion.values())))
    shares = (f"{_pct(block['routing_accuracy'])}% of test inputs go to their own task, "
              f"{_pct(block.get('routing_fallback'))}% fall back, {_pct(block.get('routing_misrouted'))}% go to "
              "another task")
    lines = [f"Routing after the last task: {shares}.", "", "| task \\ routed to | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, counts in confusion.items():
        lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return lines + [""]

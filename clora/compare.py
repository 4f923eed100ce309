"""``compare_methods``: several methods on the same stream, data, seed and settings."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from clora.config import METHODS, RunConfig
from clora.errors import ConfigError
from clora.outdir import check_out_dir

log = logging.getLogger("clora")
COMPARE_MARKER = "compare.json"
METRICS = ("average_accuracy", "bwt", "forgetting", "fwt")


def parse_methods(text: str) -> list[str]:
    """``"seq,inc,orth"`` -> ``["seq", "inc", "orth"]``, refusing unknown or repeated names."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"unknown method(s) {', '.join(unknown) or '(none given)'} (choose from {', '.join(METHODS)})")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"a method is listed twice in {text!r}")
    return methods


def comparison_row(report: dict) -> dict:
    """The per-method block of the comparison: metrics per mode, overlap and timing."""
    return {"modes": {mode: {k: block[k] for k in METRICS} for mode, block in report["modes"].items()},
            "routing_accuracy": report["modes"].get("routed", {}).get("routing_accuracy"),
            "lr": report["settings"]["lr"], "overlap": report["overlap"], "train_s": report["timing"]["train_s"],
            "eval_s": report["timing"]["eval_s"], "notes": report.get("notes", [])}


def compare_methods(config: RunConfig, methods: list[str], out: Path, lr: float | None = None) -> dict:
    """Run each method (a fresh model each time) into ``out/<method>`` and tabulate them.

    ``lr`` ``None`` gives each method its own default learning rate; a value is used for all.
    """
    from clora.runner import run_stream

    check_out_dir(out, COMPARE_MARKER)
    rows, settings = {}, None
    for method in methods:
        log.info("== method %s (%d of %d)", method, len(rows) + 1, len(methods))
        report = run_stream(dataclasses.replace(config, method=method, out=out / method, lr=lr))
        rows[method] = comparison_row(report)
        settings = settings or {k: v for k, v in report["settings"].items() if k not in ("subspace", "energy", "lr")}
        tasks, stream = report["tasks"], report["stream"]
    table = {"stream": stream, "model": config.model, "tasks": tasks, "settings": settings, "methods": rows}
    write_comparison(out, table)
    return table


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def comparison_markdown(table: dict) -> str:
    """One row per method and mode: AA, BWT, forgetting, FWT (%), overlap, train seconds."""
    shared = ", ".join(f"{k} {v}" for k, v in (table.get("settings") or {}).items())
    lines = [f"# clora compare: {table['stream']}", "", f"model `{table['model']}`; tasks: {', '.join(table['tasks'])}",
             "", f"settings shared by every method: {shared}", "",
             "| method | lr | mode | AA | BWT | forgetting | FWT | overlap | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, row in table["methods"].items():
        overlap = "n/a" if row["overlap"] is None else f"{row['overlap']:.1e}"
        for mode, m in row["modes"].items():
            lines.append(f"| {method} | {row.get('lr', 0):g} | {mode} | {_pct(m['average_accuracy'])} | {_pct(m['bwt'])} | "
                         f"{_pct(m['forgetting'])} | {_pct(m['fwt'])} | {overlap} | {row['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, table: dict) -> None:
    """``compare.json``, ``compare.md`` and ``compare.png`` (AA per method and mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(comparison_markdown(table), encoding="utf-8")
    methods = list(table["methods"])
    modes = list(next(iter(table["methods"].values()))["modes"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(methods) + 2), 4))
    width = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        values = [100 * table["methods"][m]["modes"][mode]["average_accuracy"] for m in methods]
        bars = ax.bar([i + k * width for i in range(len(methods))], values, width, label=mode)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(methods))], methods)
    ax.set_ylabel("average accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{table['stream']}: average accuracy after the last task")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    # the marker goes last: its presence means the comparison is complete
    (out / COMPARE_MARKER).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")

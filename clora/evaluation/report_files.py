"""The files of a run folder besides report.json's contents: report.md, CSVs, heatmaps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from clora.evaluation.plots import heatmap
from clora.evaluation.report import Report, report_markdown


def write_matrix_csv(path: Path, tasks: list[str], matrix: list[list[float]]) -> None:
    """Rows = after training task j, columns = evaluated task i; fractions in [0, 1]."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["after", *tasks])
        for name, row in zip(tasks, matrix):
            writer.writerow([name, *("" if x is None else f"{x:.6f}" for x in row)])  # "": not evaluated


def write_report_files(folder: Path, report: Report) -> None:
    """Write report.json, report.md and, per mode, accuracy_<mode>.csv and heatmap_<mode>.png."""
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(report_markdown(report), encoding="utf-8")
    for mode, block in report.modes.items():
        write_matrix_csv(folder / f"accuracy_{mode}.csv", report.tasks, block.accuracy_matrix)
        heatmap(folder / f"heatmap_{mode}.png", report.tasks, block.accuracy_matrix,
                f"{report.stream} / {report.method} / {mode}")


def read_report(folder: Path) -> Report:
    """The :class:`Report` in ``folder/report.json``."""
    return Report.from_dict(json.loads((Path(folder) / "report.json").read_text(encoding="utf-8")))

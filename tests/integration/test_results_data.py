"""Figures this round added to the docs are the committed data's: a changed figure in a doc fails here.

Each table is rendered again from its JSON under docs/benchmarks-data/ by the function of the script
that wrote the JSON, and must stand in the doc as it is; single figures are compared as printed.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "benchmarks-data"
RESULTS = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
SERVING = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")


def _script(name):
    path = ROOT / "examples" / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("data", ["small_tasks_shared.json", "small_tasks_own.json"])
def test_the_small_task_tables_are_the_committed_runs(data):
    table = _script("small_task_schedule").table(json.loads((DATA / data).read_text()))
    assert table in RESULTS, f"docs/results.md's table differs from {data}:\n{table}"


def test_the_answer_probability_figures_are_the_committed_runs():
    total = json.loads((DATA / "answer_probability.json").read_text())["all"]
    line = _script("answer_probability").line(total)
    assert line in RESULTS, f"docs/results.md's answer-probability line differs:\n{line}"


def test_the_openai_throughput_is_the_committed_run():
    run = json.loads((DATA / "openai_load.json").read_text())
    figure = (f"{run['openai']['throughput_rps']:.1f} requests/s against {run['predict']['throughput_rps']:.1f} "
              f"({run['throughput_ratio_openai_to_predict']:.2f}x)")
    assert figure in SERVING, figure


def test_every_marked_table_is_its_data_and_a_planted_change_is_caught():
    """``python examples/benchmarks/doc_tables.py`` rebuilds each marked table from its JSON; here nothing may
    differ, and changing one figure of a table (as a hand edit would) must be seen."""
    tables = _script("doc_tables")
    assert len(tables.marked()) >= 3
    assert tables.stale() == [], "run python examples/benchmarks/doc_tables.py after committing new data"
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    match = next(tables.MARKER.finditer(text))
    planted = match.group(0).replace("| 1 (0) | ", "| 1 (0) | 9", 1)
    assert planted != match.group(0) and tables.rebuilt(planted) == match.group(0)

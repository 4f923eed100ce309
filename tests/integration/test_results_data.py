"""The docs' figures are the committed data's: a changed figure in a doc fails here.

Each marked table or sentence is rendered again from its JSON under docs/benchmarks-data/ by the
function of the script that wrote the JSON (examples/benchmarks/doc_tables.py) and must stand in the
doc as it is; a table with neither data nor a reference marker fails too.
"""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "benchmarks-data"
SERVING = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")


def _script(name):
    path = ROOT / "examples" / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_openai_throughput_is_the_committed_run():
    run = json.loads((DATA / "openai_load.json").read_text())
    figure = (f"{run['openai']['throughput_rps']:.1f} requests/s against {run['predict']['throughput_rps']:.1f} "
              f"({run['throughput_ratio_openai_to_predict']:.2f}x)")
    assert figure in SERVING, figure


def test_every_marked_table_is_its_data_and_a_planted_change_is_caught():
    """``python examples/benchmarks/doc_tables.py`` rebuilds each marked table from its JSON; here nothing may
    differ, and changing one figure of a table (as a hand edit would) must be seen."""
    tables = _script("doc_tables")
    assert len(tables.marked()) >= 20
    assert tables.stale() == [], "run python examples/benchmarks/doc_tables.py after committing new data"
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    match = next(tables.MARKER.finditer(text))
    planted = match.group(0).replace("| 1 (0) | ", "| 1 (0) | 9", 1)
    assert planted != match.group(0) and tables.rebuilt(planted) == match.group(0)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sentence = next(m.group(0) for m in tables.MARKER.finditer(readme) if m["kind"] == "figures")
    planted = sentence.replace("68.25%", "69.25%", 1)  # a figure quoted in a sentence is checked the same way
    assert planted != sentence and tables.rebuilt(planted) == sentence


def test_every_table_in_the_docs_has_data_or_says_it_holds_no_measurement():
    assert _script("doc_tables").unmarked() == [], "mark the table with its data, or as a reference table"

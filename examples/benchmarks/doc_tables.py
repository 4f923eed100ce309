"""Rebuild the docs' tables and quoted figures from the committed data: each comes from one JSON file.

A table in a doc sits between two markers naming its data and the function that renders it::

    <!-- table: benchmarks-data/train_step_minilm.json, rendered by train_step.table -->
    | ... |
    <!-- end table -->

Figures quoted in a sentence do the same with ``<!-- figures: ... -->`` and ``<!-- end figures -->``.
A table that holds no measurement (options, defaults, formats) says so on the line before it::

    <!-- reference table -->

``python examples/benchmarks/doc_tables.py`` rewrites every marked table from its JSON (after a
benchmark wrote new data); ``--check`` only says which tables differ from their data, and which
tables are neither marked nor reference tables, and exits 1 if any is
(``tests/integration/test_results_data.py`` runs the same check, so a figure edited by hand, data
committed without its table, or a new table without data fails CI).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- (?P<kind>table|figures): (?P<data>[\w./-]+\.json), rendered by (?P<script>\w+)\."
                    r"(?P<function>\w+) -->\n(?P<body>.*?)\n?<!-- end (?P=kind) -->", re.S)
REFERENCE = "<!-- reference table -->"


def _render(script: str, function: str, data: str) -> str:
    here = Path(__file__).resolve().parent
    path = next((p for p in (here / f"{script}.py", here.parent / f"{script}.py") if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"no script {script}.py in examples/benchmarks/ or examples/")
    spec = importlib.util.spec_from_file_location(f"_doc_table_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)(json.loads((ROOT / "docs" / data).read_text(encoding="utf-8")))


def rebuilt(text: str) -> str:
    """``text`` with every marked table rendered again from its data."""
    def table(match: re.Match) -> str:
        head = match.group(0).split("\n", 1)[0]
        return f"{head}\n{_render(match['script'], match['function'], match['data'])}\n<!-- end {match['kind']} -->"
    return MARKER.sub(table, text)


def stale() -> list[str]:
    """``doc: data`` for every marked table whose text differs from what its data renders."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in MARKER.finditer(text):
            if rebuilt(match.group(0)) != match.group(0):
                found.append(f"{doc.relative_to(ROOT)}: {match['data']}")
    return found


def marked() -> list[str]:
    """``doc: data`` for every marked table (what the check covers)."""
    return [f"{doc.relative_to(ROOT)}: {m['data']}" for doc in DOCS
            for m in MARKER.finditer(doc.read_text(encoding="utf-8"))]


def unmarked() -> list[str]:
    """``doc:line`` for every table (a run of lines that start with ``|``) that is neither between data
    markers nor right after a reference-table line."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        covered = {i for m in MARKER.finditer(text)
                   for i in range(text.count("\n", 0, m.start()), text.count("\n", 0, m.end()) + 1)}
        lines = text.splitlines()
        for i, line in enumerate(lines):
            starts = line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))
            if starts and i not in covered and (i == 0 or lines[i - 1].strip() != REFERENCE):
                found.append(f"{doc.relative_to(ROOT)}:{i + 1}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the tables that differ from their data")
    args = parser.parse_args(argv)
    if args.check:
        differ, loose = stale(), unmarked()
        for line in differ:
            print(f"differs from its data: {line}")
        for line in loose:
            print(f"a table with no data and no reference marker: {line}")
        print(f"{len(marked())} tables checked, {len(differ)} differ, {len(loose)} unmarked")
        return 1 if differ or loose else 0
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        new = rebuilt(text)
        if new != text:
            doc.write_text(new, encoding="utf-8")
            print(f"rewrote {doc.relative_to(ROOT)}")
    print(f"{len(marked())} tables rebuilt from their data")
    return 0


if __name__ == "__main__":
    sys.exit(main())

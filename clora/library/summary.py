"""Light reads of a library (no torch import): what ``clora library list`` shows."""

from __future__ import annotations

from pathlib import Path

from clora.library.layout import read_manifest


def list_tasks(folder: Path) -> list[dict]:
    """One row per task: name, method, rank, labels, accuracies and where it came from."""
    manifest = read_manifest(folder)
    return [{"name": t["name"], "method": t.get("method"), "rank": t.get("rank"), "labels": len(t.get("labels", [])),
             "learned": (t.get("metrics") or {}).get("learned"), "sum": (t.get("metrics") or {}).get("sum"),
             "source": t.get("source", "trained"), "created": t.get("created")} for t in manifest["tasks"]]

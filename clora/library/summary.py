"""Light reads of a library (no torch import): what ``clora library list`` shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clora.library.layout import read_manifest


@dataclass(frozen=True)
class TaskRow:
    """One task of a library: its method, rank, label count, scores (learnt, sum now) and origin; ``metric``
    says what the scores are (``accuracy``, or a generation task's ``exact_match``, ``f1``, ``rouge_l``)."""

    name: str
    method: str | None
    rank: int | None
    labels: int
    learned: float | None
    sum: float | None
    source: str
    created: str | None
    metric: str = "accuracy"

    def __getitem__(self, key: str):
        """``row["name"]``: the mapping view, so code written against the dict keeps working."""
        return getattr(self, key)


def list_tasks(folder: Path) -> list[TaskRow]:
    """One row per task: name, method, rank, labels, accuracies and where it came from."""
    manifest = read_manifest(folder)
    return [TaskRow(name=t["name"], method=t.get("method"), rank=t.get("rank"), labels=len(t.get("labels", [])),
                    learned=(t.get("metrics") or {}).get("learned"), sum=(t.get("metrics") or {}).get("sum"),
                    source=t.get("source", "trained"), created=t.get("created"), metric=t.get("metric", "accuracy"))
            for t in manifest["tasks"]]

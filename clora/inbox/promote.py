"""Promote an inbox cluster to a new task, behind a gate that protects the tasks already served.

1. The cluster's labelled examples become the new task's data (kept in the inbox under
   ``tasks/<name>/train.jsonl``, which the new version's data reference names).
2. The new adapter is trained with the library's method (``add_task``) on a copy of the
   library (``candidates/<name>/library`` in the inbox): the library itself is not touched.
3. The gate: every earlier task's evaluation data (the test data its entry references, and
   feedback kept for it by a trusted sender, each source separately) is answered in
   ``routed`` mode, as a server answers it, by the library and by the candidate. When any
   task's accuracy on any source drops by more than ``max_drop`` points, the promotion is
   refused: the library stays at its version, the candidate is kept for inspection, and
   the result names the task, the data and the drop. Tasks without any evaluation data are
   named as unchecked; unattended promotion (``require_checked``) refuses then.
4. Otherwise the candidate's new task folder and manifest are committed into the library
   as one new version (only when the library is still at the version the candidate was
   built from), and the promoted records leave the inbox.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from clora.config import MIN_STEPS, check_seed
from clora.data.task import Example
from clora.errors import ConfigError, DataError
from clora.inbox.clusters import saved_cluster
from clora.inbox.records import CANDIDATES, CLUSTERS, Inbox
from clora.library.layout import LibraryError, load_manifest
from clora.library.manifest import Manifest
from clora.library.ops import adopt_last_task
from clora.library.store import check_task_name
from clora.serving.inference import load_library
from clora.workflows.add_task import AddTaskRequest, earlier_tasks, add_task

MIN_EXAMPLES = 8


@dataclass
class PromotionRequest:
    library: Path
    cluster: int
    name: str
    labels: list[str] | None = None
    max_drop: float = 1.0
    epochs: int | None = None  # None: the library's, raised to reach clora.config.MIN_STEPS steps
    seed: int | None = None
    device: str = "auto"
    progress: bool = True
    inbox_folder: Path | None = None
    #: refuse (before training) when an earlier task has no evaluation data: what auto-promote asks
    require_checked: bool = False

    def __post_init__(self) -> None:
        check_task_name(self.name)
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) or not (
                math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ConfigError(f"max drop must be a non-negative number of points, got {self.max_drop!r}",
                              field="max_drop")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}", field="epochs")
        if self.seed is not None:
            check_seed(self.seed)  # before a candidate is copied and trained: a seed numpy refuses is one line


@dataclass
class GateRow:
    """An earlier task's routed accuracy (points) on one source of evaluation data (``data``: ``test data``,
    the examples its library entry references, or where kept feedback came from), with the library and with
    the candidate. Each source is its own row, so examples from one cannot hide a drop on another."""

    task: str
    examples: int
    before: float
    after: float
    data: str = "test data"

    @property
    def drop(self) -> float:
        return self.before - self.after


@dataclass
class PromotionResult:
    name: str
    cluster: int
    examples: int
    committed: bool
    version: int
    accuracy: float  # the new task's accuracy on its held-out part, points
    routed_to_new: float  # share of the cluster's inputs the candidate routes to the new task, points
    gate: list[GateRow] = field(default_factory=list)
    refused_by: list[GateRow] = field(default_factory=list)
    candidate: str | None = None
    max_drop: float = 1.0
    #: earlier tasks the gate had no evaluation data for (not checked)
    unchecked: list[str] = field(default_factory=list)

    def message(self) -> str:
        unchecked = (f"; not checked (no evaluation data): {', '.join(self.unchecked)}" if self.unchecked else "")
        if self.committed:
            return (f"promoted cluster {self.cluster} as {self.name!r}: version {self.version}, "
                    f"{self.examples} examples, accuracy {self.accuracy:.1f}, {self.routed_to_new:.1f}% of the "
                    f"cluster routed to it{unchecked}")
        if not self.refused_by:  # refused before training: auto-promote commits nothing it cannot check
            return (f"not promoted: the gate has no evaluation data for {', '.join(self.unchecked)} (no test data "
                    "referenced, no admin feedback), and unattended promotion commits only what it can check; "
                    "promote by hand (clora inbox LIB promote) to accept that")
        worst = ", ".join(f"{r.task} would drop {r.drop:.1f} points on its {r.data} ({r.before:.1f} -> {r.after:.1f})"
                          for r in self.refused_by)
        allowed = f"{self.max_drop:g} point{'' if self.max_drop == 1 else 's'}"
        return (f"not promoted: {worst}, more than the {allowed} allowed; the library stays at version "
                f"{self.version}, the candidate is kept in {self.candidate}")


def _examples(inbox: Inbox, cluster: int) -> tuple[list, list[str]]:
    ids = saved_cluster(inbox, cluster)
    members = [r for r in inbox.records() if r.id in ids]
    labelled = [r for r in members if r.answer_label is not None]
    if len(labelled) < MIN_EXAMPLES:
        raise DataError(f"cluster {cluster} has {len(labelled)} labelled example(s); label at least {MIN_EXAMPLES} "
                        "(`clora inbox LIB label`, or POST /feedback) before promoting it", field="cluster")
    return labelled, [r.input for r in members]


def routed_accuracy(loaded, examples: list[Example]) -> float:
    """Points of ``examples`` a loaded library answers correctly in routed mode."""
    predictions = loaded.predict([e.text for e in examples])
    return 100.0 * sum(p.prediction == e.target for p, e in zip(predictions, examples)) / max(len(examples), 1)


def evaluation_sets(inbox: Inbox, manifest: Manifest) -> tuple[list[tuple[str, str, list[Example]]], list[str]]:
    """``([(task, data source, examples)], unchecked task names)``: each earlier task's referenced test data
    and its kept feedback by source (``clora.inbox.feedback``: only trusted senders write it)."""
    tasks, _notes = earlier_tasks(manifest, {})
    sets = [(t.name, "test data", list(t.test)) for t in tasks if t.test]
    for name in manifest.names:
        by_source: dict[str, list[Example]] = {}
        for text, label, source in inbox.evaluation(name):
            by_source.setdefault(source, []).append(Example(text, label))
        sets += [(name, source, examples) for source, examples in sorted(by_source.items())]
    checked = {name for name, _, _ in sets}
    return sets, [name for name in manifest.names if name not in checked]


def _gate(sets: list[tuple[str, str, list[Example]]], before, after) -> list[GateRow]:
    """Every evaluation set, answered by the library (``before``) and by the candidate (``after``)."""
    return [GateRow(name, len(examples), routed_accuracy(before, examples), routed_accuracy(after, examples), data)
            for name, data, examples in sets]


def _write_train(folder: Path, labelled: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps({"sentence": r.input, "label": r.answer_label}, ensure_ascii=False) + "\n"
                            for r in labelled), encoding="utf-8")
    return path


def promote(request: PromotionRequest) -> PromotionResult:
    """Train, gate and (when the gate passes) commit the cluster's new task; see the module docstring."""
    library = Path(request.library)
    inbox = Inbox(library, folder=request.inbox_folder)
    manifest = load_manifest(library)
    if request.name in manifest.names:
        raise LibraryError(f"the library already has a task named {request.name!r}; choose another name",
                           field="name")
    labelled, inputs = _examples(inbox, request.cluster)
    sets, unchecked = evaluation_sets(inbox, manifest)
    if unchecked and request.require_checked:
        return PromotionResult(request.name, request.cluster, len(labelled), committed=False,
                               version=manifest.version, accuracy=float("nan"), routed_to_new=float("nan"),
                               max_drop=request.max_drop, unchecked=unchecked)
    train = _write_train(inbox.folder / "tasks" / request.name, labelled)
    candidate = inbox.folder / CANDIDATES / request.name
    shutil.rmtree(candidate, ignore_errors=True)
    shutil.copytree(library, candidate / "library", ignore=shutil.ignore_patterns(".lock", ".readers", ".stage-*"))
    staged = candidate / "library"
    # a cluster of a few dozen examples trains for at least MIN_STEPS steps, whatever the library stored
    # (the demo's 3 epochs give 48 examples 9 steps and 52% accuracy; 15 epochs, 45 steps, gave 99.5%)
    added = add_task(AddTaskRequest(library=staged, name=request.name, train=train, labels=request.labels,
                                    epochs=request.epochs, min_steps=None if request.epochs else MIN_STEPS,
                                    seed=request.seed,
                                    device=request.device, progress=request.progress))
    before, after = load_library(library, device=request.device), load_library(staged, device=request.device)
    new_routes = after.predict(inputs)
    routed_to_new = 100.0 * sum(p.task == request.name for p in new_routes) / len(new_routes)
    gate = _gate(sets, before, after)
    refused = [row for row in gate if row.drop > request.max_drop]
    result = PromotionResult(request.name, request.cluster, len(labelled), committed=not refused,
                             version=manifest.version, accuracy=100.0 * added.accuracy, routed_to_new=routed_to_new,
                             gate=gate, refused_by=refused, max_drop=request.max_drop, unchecked=unchecked)
    if refused:
        result.candidate = str(candidate)
        return result
    result.version = adopt_last_task(library, staged, manifest.version).version
    promoted = {r.id for r in labelled} | saved_cluster(inbox, request.cluster)
    inbox.drop(promoted)
    (inbox.folder / CLUSTERS).unlink(missing_ok=True)  # its ids and numbering are stale now
    shutil.rmtree(candidate, ignore_errors=True)
    return result

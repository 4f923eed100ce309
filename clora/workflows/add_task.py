"""``add_task``: train one new task onto a deployed library and commit it atomically.

Nothing already in the library is retrained or rewritten: the earlier adapters are
loaded frozen, the new adapter is trained with the library's method (for ``orth``,
orthogonal to the stored subspace), the tasks whose test data the library references
are evaluated with every adapter active (``sum`` mode), and a new library version is
committed that adds one task folder and a new manifest.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from clora.adapters import use_adapters
from clora.config import check_quantize_name, check_seed
from clora.data.loaders import data_reference, load_referenced_task, load_task
from clora.data.stream import Stream, TaskSpec
from clora.data.task import DEFAULT_MAX_NEW_TOKENS, Task
from clora.errors import ConfigError, DataError
from clora.evaluation.evaluate import accuracy
from clora.families import check_answers
from clora.evaluation.routed import task_stats
from clora.library.build import TaskArtifacts, entry_of, next_manifest, stage_task
from clora.library.layout import LibraryError, load_manifest
from clora.library.manifest import Manifest
from clora.library.store import check_task_name, commit, kept_files, write_lock
from clora.library.tensors import load_leftover, load_router_stats, load_subspace
from clora.methods import Method, make_method
from clora.routing.router import RouterConfig
from clora.routing.triggers import parse_trigger_args
from clora.training.devices import resolve_device
from clora.training.distributed import Workers
from clora.training.loop import TrainStats
from clora.workflows.learn_task import learn_task
from clora.training.seeding import seed_everything
from clora.workflows.add_task_routed import routed_columns
from clora.workflows.library_model import LibraryModel, open_library_model

log = logging.getLogger("clora")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def infer_format(path: Path, given: str | None) -> str:
    if given:
        return given
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {str(path)!r} from its name; give the format (jsonl, json "
                        "or csv)", field="format")
    return fmt


def _has_content(path: Path) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            if chunk.strip():
                return True
    return False


@dataclass
class AddTaskRequest:
    """A task to add to a library; ``None`` training settings mean the library's.

    ``train`` / ``test`` are files (jsonl, json or csv); ``eval_files`` maps an earlier
    task's name to a test file to re-evaluate it on.
    """

    library: Path
    name: str
    train: Path
    test: Path | None = None
    format: str | None = None
    labels: list[str] | None = None
    instruction: str = ""
    triggers: list[str] = field(default_factory=list)
    text_field: str = "sentence"
    label_field: str = "label"
    kind: str = "classification"
    metric: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    eval_files: dict[str, Path] = field(default_factory=dict)
    model: str | None = None
    epochs: int | None = None
    #: the fewest optimiser steps the task trains for (None: the library's, or ``clora.config.MIN_STEPS``)
    min_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_train: int | None = None
    max_test: int | None = None
    seed: int | None = None
    device: str = "auto"
    #: the base's quantization (None: the library's; another is refused: a library's tasks share one base)
    quantize: str | None = None
    progress: bool = True
    #: router settings to store in the new version for inference (None: keep the library's)
    threshold: float | None = None
    margin: float | None = None
    fallback: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", field=name)
        if self.seed is not None:
            check_seed(self.seed)
        if self.quantize is not None:
            check_quantize_name(self.quantize)
        RouterConfig.of_library(None, **self.router_overrides)  # a bad threshold, margin or fallback: before training
        for name, path in self.eval_files.items():
            if not Path(path).is_file():
                raise DataError(f"evaluation file {str(path)!r} for {name!r} not found", field="eval_files")

    @property
    def router_overrides(self) -> dict:
        """The router settings this request gives (to store in the new version)."""
        return {k: v for k, v in (("threshold", self.threshold), ("margin", self.margin),
                                  ("fallback", self.fallback)) if v is not None}

    def spec(self) -> TaskSpec:
        for what, path in (("training", self.train), ("test", self.test)):
            if path is not None and not Path(path).is_file():
                raise DataError(f"{what} file {str(path)!r} not found", field=what.replace("training", "train"))
            if path is not None and not _has_content(Path(path)):
                raise DataError(f"{what} file {str(path)!r} has no rows", field=what.replace("training", "train"))
        return TaskSpec(name=self.name, format=infer_format(self.train, self.format), instruction=self.instruction,
                        path=str(self.train), test_path=str(self.test) if self.test else None,
                        text_field=self.text_field, label_field=self.label_field, labels=self.labels,
                        triggers=parse_trigger_args(list(self.triggers)), kind=self.kind, metric=self.metric,
                        max_new_tokens=self.max_new_tokens)


def _anchor(spec: TaskSpec) -> Stream:
    return Stream(name="add-task", tasks=[spec], source=Path.cwd() / "add-task.yaml")


def _check_new_name(manifest: Manifest, name: str) -> None:
    check_task_name(name)
    if name in manifest.names:
        raise LibraryError(f"the library already has a task named {name!r}; choose another name", field="name")
    if manifest.method in ("seq", "mtl", "osf"):
        raise LibraryError(f"this library's method {manifest.method!r} keeps one adapter for every task; "
                           "add-task needs a method with one adapter per task (inc, olora, olie, orth, replay)")


def earlier_tasks(manifest: Manifest, eval_files: dict[str, Path]) -> tuple[list[Task], list[str]]:
    """Earlier tasks to re-evaluate (library data references, or files the user passes) and notes."""
    tasks, notes = [], []
    unknown = sorted(set(eval_files) - set(manifest.names))
    if unknown:
        raise DataError(f"evaluation files name task(s) not in the library: {', '.join(unknown)}", field="eval_files")
    for entry in manifest.tasks:
        ref = dict(entry.data) if entry.data else None
        if entry.name in eval_files:
            path = str(eval_files[entry.name])
            ref = {"name": entry.name, "format": infer_format(Path(path), None), "path": path, "test_path": path,
                   "instruction": entry.instruction, **entry.answer_fields()}
        if not ref:
            notes.append(f"{entry.name}: no test data referenced; not re-evaluated (give an evaluation file for it)")
            continue
        try:
            tasks.append(load_referenced_task(ref))
        except DataError as exc:
            if entry.name in eval_files:  # the user asked for this one: say so rather than skip it
                raise DataError(f"evaluation file for {entry.name!r}: {exc}", field="eval_files") from None
            notes.append(f"{entry.name}: not re-evaluated ({exc})")
    return tasks, notes


def _train(lm: LibraryModel, task: Task, workers: Workers) -> tuple[Method, int, TrainStats]:
    """Train the new adapter with every library adapter selected and frozen; returns (method, index, stats)."""
    method = make_method(lm.config, reserved=load_subspace(lm.folder, lm.manifest),
                         leftover=load_leftover(lm.folder, lm.manifest))
    index = len(lm.lora)
    stats = learn_task(lm.family, method, lm.lora, index, [task], lm.config, lm.all_adapters() + [index], workers)
    if method.private_of(index) is not None:  # it answers only as the new task's own, never in sum mode
        lm.private_of[task.name] = method.private_of(index)
    if method.uses_stored_data:
        # a library keeps adapters, never its tasks' examples: there is nothing to replay
        method.notes[:] = ["the library stores no training examples of its tasks, so this task trained "
                           "without a replay buffer (as inc)"]
    return method, index, stats


@dataclass
class EarlierTask:
    """An earlier task's accuracy with every adapter active (sum mode), before (as recorded) and after the new
    task, and routed (each input in the snapshot of the task the router picks: what ``predict`` and ``serve``
    answer) before and after."""

    task: str
    before: float | None
    after: float
    routed_before: float | None = None
    routed_after: float | None = None


@dataclass
class AddTaskResult:
    """What ``add_task`` did: the new task's score (``accuracy``, in its ``metric``), each earlier task's change,
    the new version."""

    task: str
    accuracy: float
    earlier: list[EarlierTask]
    library: str
    version: int | None
    notes: list[str]
    training: dict
    timing: dict
    metric: str = "accuracy"
    #: the new task's routed score (its test inputs routed over every task of the new version)
    routed_accuracy: float | None = None

    def __getitem__(self, key: str):
        """``result["accuracy"]``: the mapping view, so code written against the dict keeps working."""
        value = getattr(self, key)
        return [vars(row) for row in value] if key == "earlier" else value


def add_task(request: AddTaskRequest) -> AddTaskResult:
    """Add ``request.name`` to the library; returns the accuracies, the forgetting, the version and timing."""
    folder = Path(request.library)
    manifest = load_manifest(folder)
    _check_new_name(manifest, request.name)
    if request.quantize not in (None, manifest.quantization):
        raise ConfigError(f"the library's tasks were trained on a base quantized {manifest.quantization}; a task "
                          f"trained on a {request.quantize} one would not fit them (leave quantize out)",
                          field="quantize")
    spec = request.spec()
    seed = request.seed if request.seed is not None else manifest.settings.get("seed", 0)
    task = load_task(spec, _anchor(spec), None, max_train=request.max_train, max_test=request.max_test, seed=seed)
    device = resolve_device(request.device)
    workers = Workers(device)  # under accelerate launch: train together, the main process commits
    with write_lock(folder) if workers.is_main else contextlib.nullcontext():
        manifest = load_manifest(folder)  # what is current now that we are the only writer
        _check_new_name(manifest, request.name)
        earlier, notes = earlier_tasks(manifest, request.eval_files)
        started = time.perf_counter()
        seed_everything(seed)
        lm = open_library_model(folder, model=request.model, manifest=manifest, epochs=request.epochs,
                                min_steps=request.min_steps, lr=request.lr, batch_size=request.batch_size, seed=seed,
                                progress=request.progress and workers.is_main, device=device)
        if len(lm.lora) == 0:
            raise ConfigError("the library holds no adapters to add a task to", field="library")
        check_answers(lm.family.kind, [task])
        load_s = time.perf_counter() - started
        method, index, stats = _train(lm, task, workers)
        notes += method.notes
        train_s = time.perf_counter() - started - load_s
        router_stats = _router_stats(folder, manifest, lm, task)
        with use_adapters(lm.all_adapters()):
            accuracy_new, rows = _evaluate(lm, task, earlier)
        routed_new = routed_columns(lm, manifest, request.router_overrides, task, earlier, rows, router_stats)
        eval_s = time.perf_counter() - started - load_s - train_s
        entry, new = _next_manifest(manifest, task, spec, request, seed, accuracy_new, rows, list(lm.index_of),
                                    routed_new)
        version = _commit(folder, manifest, new, entry, lm, method, index, router_stats[-1]).version \
            if workers.is_main else None
    workers.barrier()
    commit_s = time.perf_counter() - started - load_s - train_s - eval_s
    return AddTaskResult(task=task.name, accuracy=accuracy_new, earlier=rows, library=str(folder),
                         version=version, notes=notes,
                         training=stats.summary(), metric=task.metric, routed_accuracy=routed_new,
                         timing={"load_s": load_s, "train_s": train_s, "eval_s": eval_s, "commit_s": commit_s})


def _router_stats(folder: Path, manifest: Manifest, lm: LibraryModel, task: Task) -> list:
    """Every earlier task's stored router statistics (None where a task has none), then the new task's,
    calibrated against them."""
    stored = [load_router_stats(folder, t.router) for t in manifest.tasks]
    shrinkage = RouterConfig.of_library(manifest.router).shrinkage
    return stored + [task_stats(lm.family, task, [s for s in stored if s is not None], shrinkage)]


def _commit(folder: Path, manifest: Manifest, new: dict, entry: dict, lm: LibraryModel, method: Method, index: int,
            stats) -> Manifest:
    """Stage the new task's files (``entry`` is the new manifest's last task, given their paths) and commit the new
    manifest (``clora.library.store``)."""
    private = method.private_of(index)
    artifacts = TaskArtifacts(entry, lm.lora.factors(index), method.reserved_by(index), stats,
                              method.leftover_by(index), private=None if private is None else lm.lora.factors(private))
    rel_dir, stage = stage_task(folder, artifacts, kept_files(folder, manifest))
    return commit(folder, manifest, new, {rel_dir: stage})


def _evaluate(lm: LibraryModel, task: Task, earlier: list[Task]) -> tuple[float, list[EarlierTask]]:
    """Accuracy of the new task and of each earlier one under the caller's selection (every adapter)."""
    before = {t.name: t.metrics.get("sum") for t in lm.manifest.tasks}
    rows = [EarlierTask(old.name, before.get(old.name), accuracy(lm.family, old, lm.config, desc=f"eval {old.name}"))
            for old in earlier]
    return accuracy(lm.family, task, lm.config, desc=f"eval {task.name}"), rows


def _next_manifest(manifest: Manifest, task: Task, spec: TaskSpec, request: AddTaskRequest, seed: int,
                   accuracy_new: float, rows: list[EarlierTask], adapter_tasks: list[str],
                   routed_new: float | None) -> tuple[dict, dict]:
    """The new task's entry and the next version (each earlier task's scores after the new one, then the entry)."""
    scores = {row.task: {"sum": row.after, **({"routed": row.routed_after} if row.routed_after is not None else {})}
              for row in rows}
    data = data_reference(spec, _anchor(spec), None, max_train=request.max_train, max_test=request.max_test, seed=seed)
    entry = entry_of(task, method=manifest.method, rank=manifest.rank, snapshot=adapter_tasks + [task.name], data=data,
                     metrics={"learned": accuracy_new, "sum": accuracy_new,
                              **({"routed": routed_new} if routed_new is not None else {})})
    return entry, next_manifest(manifest, entry, scores, request.router_overrides)

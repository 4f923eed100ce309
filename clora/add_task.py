"""``add_task``: train one new task onto a deployed library and commit it atomically.

Nothing already in the library is retrained or rewritten: the earlier adapters are
loaded frozen, the new adapter is trained with the library's method (for ``orth``,
orthogonal to the stored subspace), the tasks whose test data the library references
are evaluated with every adapter active (``sum`` mode), and a new library version is
committed that adds one task folder and a new manifest.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from clora.devices import resolve_device
from clora.distributed import Workers
from clora.errors import ConfigError, DataError
from clora.evaluate import accuracy
from clora.formats import data_reference, load_referenced_task, load_task
from clora.library.build import entry_of, stage_task
from clora.library.layout import LibraryError, read_manifest
from clora.library.model import LibraryModel, open_library_model
from clora.library.store import check_task_name, commit, kept_files, write_lock
from clora.library.tensors import load_subspace
from clora.methods import make_method
from clora.routed_eval import task_stats
from clora.routing.triggers import parse_trigger_args
from clora.seeding import seed_everything
from clora.stream import Stream, TaskSpec
from clora.task import Task
from clora.train import replay_inputs, train_task

log = logging.getLogger("clora")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def infer_format(path: Path, given: str | None) -> str:
    if given:
        return given
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {str(path)!r} from its name; pass --format jsonl|json|csv")
    return fmt


def _has_content(path: Path) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            if chunk.strip():
                return True
    return False


@dataclass
class AddTaskRequest:
    """What ``clora add-task`` was asked to do; ``None`` training settings mean the library's."""

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
    eval_files: dict[str, Path] = field(default_factory=dict)
    model: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_train: int | None = None
    max_test: int | None = None
    seed: int | None = None
    device: str = "auto"
    progress: bool = True

    def spec(self) -> TaskSpec:
        for what, path in (("training", self.train), ("test", self.test)):
            if path is not None and not Path(path).is_file():
                raise DataError(f"{what} file {str(path)!r} not found")
            if path is not None and not _has_content(Path(path)):
                raise DataError(f"{what} file {str(path)!r} has no rows")
        return TaskSpec(name=self.name, format=infer_format(self.train, self.format), instruction=self.instruction,
                        path=str(self.train), test_path=str(self.test) if self.test else None,
                        text_field=self.text_field, label_field=self.label_field, labels=self.labels,
                        triggers=parse_trigger_args(list(self.triggers)))


def _anchor(spec: TaskSpec) -> Stream:
    return Stream(name="add-task", tasks=[spec], source=Path.cwd() / "add-task.yaml")


def _check_new_name(manifest: dict, name: str) -> None:
    check_task_name(name)
    if any(t["name"] == name for t in manifest["tasks"]):
        raise LibraryError(f"the library already has a task named {name!r}; choose another --name")
    if manifest["method"] in ("seq", "mtl"):
        raise LibraryError(f"this library's method {manifest['method']!r} keeps one adapter for every task; "
                           "add-task needs a method with one adapter per task (inc, olora, olie, orth)")


def _earlier_tasks(manifest: dict, eval_files: dict[str, Path]) -> tuple[list[Task], list[str]]:
    """Earlier tasks to re-evaluate (library data references, or files the user passes) and notes."""
    tasks, notes = [], []
    unknown = sorted(set(eval_files) - {t["name"] for t in manifest["tasks"]})
    if unknown:
        raise DataError(f"--eval names task(s) not in the library: {', '.join(unknown)}")
    for entry in manifest["tasks"]:
        ref = entry.get("data")
        if entry["name"] in eval_files:
            path = str(eval_files[entry["name"]])
            ref = {"name": entry["name"], "format": infer_format(Path(path), None), "path": path, "test_path": path,
                   "instruction": entry.get("instruction", ""), "labels": entry["labels"]}
        if not ref:
            notes.append(f"{entry['name']}: no test data referenced; not re-evaluated (pass --eval NAME=FILE)")
            continue
        try:
            tasks.append(load_referenced_task(ref))
        except DataError as exc:
            notes.append(f"{entry['name']}: not re-evaluated ({exc})")
    return tasks, notes


def _train(lm: LibraryModel, task: Task, workers: Workers) -> tuple[object, int, dict]:
    """Train the new adapter on top of the library's frozen ones; returns (method, index, stats)."""
    method = make_method(lm.config)
    method.bases = load_subspace(lm.folder, lm.manifest)
    index = len(lm.lora)
    params = method.begin_task(lm.lora, index)
    stats = train_task(lm.family, [task], params, lm.config, task_index=index, penalty=lambda: method.penalty(lm.lora),
                       workers=workers)
    method.end_task(lm.lora, index, run_inputs=lambda: replay_inputs(lm.family, task, lm.config),
                    masks=lambda: lm.family.token_mask)
    return method, index, stats


def add_task(request: AddTaskRequest) -> dict:
    """Add ``request.name`` to the library; returns a summary (accuracies, forgetting, version, timing)."""
    folder = Path(request.library)
    manifest = read_manifest(folder)
    _check_new_name(manifest, request.name)
    spec = request.spec()
    settings = manifest["settings"]
    seed = request.seed if request.seed is not None else settings.get("seed", 0)
    task = load_task(spec, _anchor(spec), None, max_train=request.max_train, max_test=request.max_test, seed=seed)
    device = resolve_device(request.device)
    workers = Workers(device)  # under accelerate launch: train together, the main process commits
    with write_lock(folder) if workers.is_main else contextlib.nullcontext():
        manifest = read_manifest(folder)  # what is current now that we are the only writer
        _check_new_name(manifest, request.name)
        earlier, notes = _earlier_tasks(manifest, request.eval_files)
        started = time.perf_counter()
        seed_everything(seed)
        lm = open_library_model(folder, model=request.model, manifest=manifest, epochs=request.epochs,
                                lr=request.lr, batch_size=request.batch_size, seed=seed,
                                progress=request.progress and workers.is_main, device=device)
        if len(lm.lora) == 0:
            raise ConfigError("the library holds no adapters to add a task to")
        load_s = time.perf_counter() - started
        method, index, stats = _train(lm, task, workers)
        notes += method.notes
        train_s = time.perf_counter() - started - load_s
        lm.activate_all()
        result = _evaluate(lm, task, earlier)
        eval_s = time.perf_counter() - started - load_s - train_s
        new = _next_manifest(manifest, task, spec, request, seed, result, list(lm.index_of))
        committed = _commit(folder, manifest, new, lm, method, index, task) if workers.is_main else {"version": None}
    workers.barrier()
    commit_s = time.perf_counter() - started - load_s - train_s - eval_s
    return {**result, "library": str(folder), "version": committed["version"], "notes": notes,
            "training": {"steps": stats["steps"], "final_loss": stats["final_loss"]},
            "timing": {"load_s": load_s, "train_s": train_s, "eval_s": eval_s, "commit_s": commit_s}}


def _commit(folder: Path, manifest: dict, new: dict, lm: LibraryModel, method, index: int, task: Task) -> dict:
    """Stage the new task's files and commit the new manifest (``clora.library.store``)."""
    rel_dir, stage = stage_task(folder, new["tasks"][-1], lm.lora.factors(index),
                                getattr(method, "contributions", {}).get(index), kept_files(folder, manifest),
                                router=task_stats(lm.family, task, lm.config))
    return commit(folder, manifest, new, {rel_dir: stage})


def _evaluate(lm: LibraryModel, task: Task, earlier: list[Task]) -> dict:
    """Accuracy of the new task and of each earlier one, every adapter active."""
    before = {t["name"]: (t.get("metrics") or {}).get("sum") for t in lm.manifest["tasks"]}
    rows = []
    for old in earlier:
        after = accuracy(lm.family, old, lm.config, desc=f"eval {old.name}")
        rows.append({"task": old.name, "before": before.get(old.name), "after": after})
    return {"task": task.name, "accuracy": accuracy(lm.family, task, lm.config, desc=f"eval {task.name}"),
            "earlier": rows}


def _next_manifest(manifest: dict, task: Task, spec: TaskSpec, request: AddTaskRequest, seed: int,
                   result: dict, adapter_tasks: list[str]) -> dict:
    new = copy.deepcopy(manifest)
    after = {row["task"]: row["after"] for row in result["earlier"]}
    for entry in new["tasks"]:  # metadata only: the adapter files stay as they are
        if entry["name"] in after:
            entry.setdefault("metrics", {})["sum"] = after[entry["name"]]
    data = data_reference(spec, _anchor(spec), None, max_train=request.max_train, max_test=request.max_test, seed=seed)
    new["tasks"].append(entry_of(task, method=manifest["method"], rank=manifest["settings"]["rank"],
                                   snapshot=adapter_tasks + [task.name], data=data,
                                   metrics={"learned": result["accuracy"], "sum": result["accuracy"]}))
    return new

"""``run_stream``: train a stream task by task, evaluate after each, write the report."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from clora.config import RunConfig
from clora.devices import resolve_device, resolve_precision
from clora.distributed import Workers
from clora.evaluate import accuracy, correct_flags
from clora.families import FAMILIES, Family
from clora.formats import data_reference, load_tasks
from clora.library.build import create_library, entry_of, manifest_header
from clora.lora import LoRASet, inject_lora
from clora.methods import Method, make_method
from clora.models import BaseModel, load_base_model, model_reference
from clora.outdir import check_out_dir, staged_out_dir
from clora.routed_eval import RoutedRun
from clora.report import build_report, oracle_matrix, write_report_files
from clora.seeding import seed_everything
from clora.stream import Stream, load_stream
from clora.subspace import max_overlap
from clora.task import Task
from clora.train import replay_inputs, train_task

log = logging.getLogger("clora")


def default_out(config: RunConfig) -> Path:
    """``clora-runs/<stream>-<method>`` when no ``--out`` is given."""
    return Path("clora-runs") / f"{Path(config.stream).stem}-{config.method}"


def _evaluate_all(family, tasks, config, label: str) -> list[float]:
    return [accuracy(family, t, config, desc=f"eval {label} on {t.name}") for t in tasks]


@dataclass
class Session:
    """Everything a run works with once the inputs are read and the model is adapted."""

    config: RunConfig
    stream: Stream
    tasks: list[Task]
    base_model: BaseModel
    targets: tuple[str, ...]
    lora: LoRASet
    family: Family
    method: Method
    workers: Workers


def prepare(config: RunConfig) -> Session:
    """Read the stream and its data (failing early on bad input), load and adapt the model.

    Under ``accelerate launch`` every process prepares the same session; only the main
    one shows progress and logs.
    """
    device = resolve_device(config.device)
    workers = Workers(device)
    if not workers.is_main:
        config = dataclasses.replace(config, progress=False)
        log.setLevel(logging.WARNING)
    elif workers.size > 1:
        log.info("training data-parallel over %d processes on %s", workers.size, device)
    stream = load_stream(config.stream)
    tasks = load_tasks(stream, config.data_dir, max_train=config.max_train, max_test=config.max_test, seed=config.seed)
    seed_everything(config.seed)
    base_model = load_base_model(config.model, device=device, dtype=resolve_precision(config.precision, device))
    targets = config.targets or base_model.default_targets
    lora = LoRASet(inject_lora(base_model.model, targets, config.rank, config.scaling))
    family = FAMILIES[base_model.kind](base_model.model, base_model.tokenizer, config, lora.disabled)
    return Session(config, stream, tasks, base_model, targets, lora, family, make_method(config), workers)


def learn_stream(s: Session) -> dict:
    """Train task by task; after each, evaluate every task in the new snapshot.

    Returns ``base`` (accuracy per task, no adapter), ``after[j][i]`` (snapshot j+1 on
    task i), per-task ``training`` stats and ``timing``. A joint method (``mtl``) trains
    once on every task; its single evaluation fills each row. Methods that keep
    snapshots also get ``routed[j][i]`` (the router over tasks 1..j+1 picks each input's
    snapshot), the final ``routing`` summary and each task's ``router_stats``.
    """
    started = time.perf_counter()
    with s.lora.disabled():
        base = _evaluate_all(s.family, s.tasks, s.config, "base")
    eval_s, train_s, after, training, routed_rows = time.perf_counter() - started, 0.0, [], [], []
    routing = s.method.keeps_snapshots and not s.method.joint  # one adapter for all: nothing to route
    routed = RoutedRun(s.family, s.lora, s.config, s.tasks) if routing else None
    rounds = [s.tasks] if s.method.joint else [[task] for task in s.tasks]
    for j, tasks in enumerate(rounds):
        log.info("task %d/%d: %s (%d train, %d test)", j + 1, len(rounds), "+".join(t.name for t in tasks),
                 sum(len(t.train) for t in tasks), sum(len(t.test) for t in tasks))
        started = time.perf_counter()
        params = s.method.begin_task(s.lora, j)
        stats = train_task(s.family, tasks, params, s.config, task_index=j, penalty=lambda: s.method.penalty(s.lora),
                           workers=s.workers)
        s.method.end_task(s.lora, j, run_inputs=lambda: replay_inputs(s.family, tasks[0], s.config),
                          masks=lambda: s.family.token_mask)
        train_s += time.perf_counter() - started
        training.append({"task": "+".join(t.name for t in tasks), "steps": stats["steps"], "final_loss": stats["final_loss"]})
        started = time.perf_counter()
        row, routed_row = _evaluate_step(s, j, routed, training[-1]["task"])
        after.append(row)
        if routed_row is not None:
            routed_rows.append(routed_row)
        eval_s += time.perf_counter() - started
    if s.method.joint:
        after = after * len(s.tasks)
    return {"base": base, "after": after, "training": training, "timing": {"train_s": train_s, "eval_s": eval_s},
            "routed": routed_rows or None, "routing": routed.routing_summary() if routed else None,
            "router_stats": routed.stats if routed else []}


def _evaluate_step(s: Session, j: int, routed: RoutedRun | None, label: str):
    """Every task in snapshot ``j+1`` (sum mode; task j's results kept per example), then routed."""
    s.lora.activate(s.method.snapshot(j + 1))
    row = []
    for i, task in enumerate(s.tasks):
        flags = correct_flags(s.family, task, s.config, desc=f"eval after {label} on {task.name}")
        row.append(sum(flags) / len(flags))
        if routed is not None and i == j:
            routed.learned(j, flags)
    if routed is None:
        return row, None
    snapshots = {t.name: s.method.snapshot(k + 1) for k, t in enumerate(s.tasks[:j + 1])}
    return row, routed.row(j, snapshots)


def library_tasks(s: Session, results: dict) -> list[tuple]:
    """``(entry, factors, directions, router stats)`` per task for the run's library (``clora.library.build``)."""
    names = [t.name for t in s.tasks]
    # task name -> index of the adapter it owns (seq/mtl: one adapter, owned by the last task)
    owner = {name: j for j, name in enumerate(names)} if s.method.keeps_snapshots else {names[-1]: 0}
    contributions = getattr(s.method, "contributions", {})
    tasks = []
    for j, (task, spec) in enumerate(zip(s.tasks, s.stream.tasks)):
        data = data_reference(spec, s.stream, s.config.data_dir, max_train=s.config.max_train,
                              max_test=s.config.max_test, seed=s.config.seed)
        metrics = {"learned": results["after"][j][j], "sum": results["after"][-1][j]}
        snapshot = [n for n in names[:j + 1] if n in owner] or [names[-1]]
        entry = entry_of(task, method=s.config.method, rank=s.config.rank, snapshot=snapshot, data=data,
                           metrics=metrics)
        factors = s.lora.factors(owner[task.name]) if task.name in owner else None
        stats = results["router_stats"][j] if j < len(results["router_stats"]) else None
        tasks.append((entry, factors, contributions.get(j), stats))
    return tasks


def write_run(s: Session, out: Path, report: dict, results: dict) -> None:
    """Write the report files and the library into ``out``, atomically."""
    header = manifest_header(s.config, model=model_reference(s.config.model),
                             fingerprint=s.base_model.fingerprint, family=s.base_model.kind,
                             targets=s.targets, layers=s.lora.layers, router_layer=s.family.router_layer,
                             router_tokens=s.family.router_tokens)
    with staged_out_dir(out) as stage:
        write_report_files(stage, report)
        create_library(stage / "library", header, library_tasks(s, results))


def run_stream(config: RunConfig) -> dict:
    """Run ``config.stream`` end to end; returns the report (also written under the run folder)."""
    out = config.out or default_out(config)
    check_out_dir(out)
    session = prepare(config)
    results = learn_stream(session)
    report = build_report(
        stream=session.stream.name, method=config.method, model=config.model,
        tasks=[t.name for t in session.tasks], base=results["base"],
        matrices=_matrices(session, results),
        overlap=_overlap(session.lora), timing=results["timing"],
        extra={"settings": _settings(config, session.targets), "training": results["training"],
               "subspace": session.method.subspace_report(), "notes": session.method.notes})
    if results["routing"]:
        report["modes"]["routed"].update(results["routing"])
    if session.method.joint:
        _mark_not_continual(report)
    if session.workers.is_main:  # every process holds the same result; one writes it
        write_run(session, out, report, results)
    session.workers.barrier()
    report["out"] = str(out)
    report["main_process"] = session.workers.is_main
    return report


def _matrices(s: Session, results: dict) -> dict[str, list[list[float]]]:
    matrices = {"oracle": oracle_matrix(results["after"], s.method.keeps_snapshots), "sum": results["after"]}
    if results["routed"]:
        matrices["routed"] = results["routed"]
    return matrices


def _mark_not_continual(report: dict) -> None:
    """A joint run has one evaluation: transfer and forgetting are undefined, not zero."""
    for block in report["modes"].values():
        block.update(bwt=None, forgetting=None, fwt=None)
    report["notes"].append("mtl trains once on the union of all tasks: every matrix row repeats its single "
                           "evaluation; BWT, forgetting and FWT are not defined")


def _overlap(lora: LoRASet) -> float | None:
    """Max over modules and adapter pairs of the largest principal cosine (DESIGN.md)."""
    if len(lora) < 2:
        return None
    per_adapter = [lora.factors(i) for i in range(len(lora))]
    return max(max_overlap([f[name][0] for f in per_adapter]) for name in lora.layers)


def run_settings(config: RunConfig) -> dict:
    """The settings a report records for ``config`` (its method's own knobs included), less targets."""
    keys = ("rank", "alpha", "epochs", "lr", "batch_size", "max_train", "max_test", "seed", "temperature",
            "max_length")
    keys += {"orth": ("frame_lr", "subspace", "energy", "retraction"), "olora": ("lambda1", "lambda2"),
             "olie": ("olie_lambda", "taylor_order")}.get(config.method, ())
    settings = {k: getattr(config, k) for k in keys}
    if config.method == "orth":
        settings["frame_lr"] = config.frame_rate  # the resolved rate, so a report says what ran
    return settings


def _settings(config: RunConfig, targets) -> dict:
    return {**run_settings(config), "targets": list(targets)}

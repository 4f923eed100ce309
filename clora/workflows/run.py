"""``run_stream``: train a stream task by task, evaluate after each, write the report.

The flow, top to bottom: :func:`prepare` reads the stream and its data (failing early)
and adapts the model; :func:`learn_stream` trains each task with the adapters of its
snapshot selected and evaluates every task after it; :func:`run_stream` turns the
results into a :class:`~clora.evaluation.report.Report` and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clora.adapters import LoRASet, inject_lora, no_adapters, use_adapters
from clora.adapters.capacity import capacity_rows
from clora.adapters.subspace import max_overlap
from clora.config import SHARED_SETTINGS, RunConfig, check_base_trainable
from clora.data.loaders import data_reference, load_tasks
from clora.data.stream import Stream, load_stream
from clora.data.task import Task
from clora.evaluation.evaluate import accuracy, example_scores
from clora.evaluation.report import Report, build_report, oracle_matrix
from clora.evaluation.report_files import write_report_files
from clora.evaluation.routed import RoutedRun
from clora.routing.router import SUMMED
from clora.families import FAMILIES, Family, check_answers
from clora.families.loading import BaseModel, load_base_model
from clora.workflows.learn_task import learn_task
from clora.library.build import TaskArtifacts, create_library, entry_of, manifest_header
from clora.methods import Method, make_method
from clora.training.devices import resolve_device, resolve_precision
from clora.training.distributed import Workers
from clora.training.seeding import seed_everything
from clora.workflows.outdir import check_out_dir, staged_out_dir

log = logging.getLogger("clora")


def default_out(config: RunConfig) -> Path:
    """``clora-runs/<stream>-<method>`` when no output folder is given."""
    name = config.stream.name if isinstance(config.stream, Stream) else Path(config.stream).stem
    return Path("clora-runs") / f"{name}-{config.method}"


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


@dataclass
class StreamResults:
    """What :func:`learn_stream` measured.

    ``base[i]``: task i with no adapter; ``after[j][i]``: snapshot j+1 on task i;
    ``routed[j][i]``: the router over tasks 1..j+1 picks each input's snapshot (methods
    that keep snapshots); ``routing``: the last row's routing accuracy and confusion;
    ``router_stats[j]``: task j's learned-trigger statistics.
    """

    base: list[float]
    after: list[list[float]] = field(default_factory=list)
    training: list[dict] = field(default_factory=list)
    timing: dict = field(default_factory=lambda: {"train_s": 0.0, "eval_s": 0.0})
    routed: list[list[float]] = field(default_factory=list)
    #: task j in the snapshot that answers it (``Method.answering``), where that is not snapshot j+1
    #: (a private adapter): the oracle diagonal
    answered: dict[int, float] = field(default_factory=dict)
    routing: dict | None = None
    router_stats: list = field(default_factory=list)


def planned(config: RunConfig, kinds: Sequence[str]) -> RunConfig:
    """``config`` with its method's settings resolved for a stream of tasks of ``kinds``
    (``MethodSettings.planned``: orth keeps room for every task and takes the tasks' kind's energy)."""
    return dataclasses.replace(config, settings=config.settings.planned(kinds))


def prepare(config: RunConfig, model=None, tokenizer=None) -> Session:
    """Read the stream and its data (failing early on bad input), load and adapt the model.

    ``model`` / ``tokenizer``: an already-loaded transformers model and its tokenizer,
    used (as a copy) instead of loading ``config.model``. Under ``accelerate launch``
    every process prepares the same session; only the main one shows progress.
    """
    device = resolve_device(config.device)
    workers = Workers(device)
    if not workers.is_main:
        config = dataclasses.replace(config, progress=False)
    elif workers.size > 1:
        log.info("training data-parallel over %d processes on %s", workers.size, device)
    stream = load_stream(config.stream)
    tasks = load_tasks(stream, config.data_dir, max_train=config.max_train, max_test=config.max_test, seed=config.seed)
    config = planned(config, [t.kind for t in tasks])
    method = make_method(config)  # before the model loads: a method that cannot run says so first
    seed_everything(config.seed)
    base_model = load_base_model(model if model is not None else config.model, device=device,
                                 dtype=resolve_precision(config.precision, device), tokenizer=tokenizer,
                                 quantize=config.quantize)
    check_base_trainable(config.method, config.settings, base_model.quantization)  # a model object's
    config = dataclasses.replace(config, quantize=base_model.quantization)  # a model object's, when given
    check_answers(base_model.kind, tasks)
    targets = config.targets or base_model.default_targets
    lora = LoRASet(inject_lora(base_model.model, targets, config.rank, config.scaling, method.taylor_order))
    family = FAMILIES[base_model.kind](base_model.model, base_model.tokenizer, config)
    return Session(config, stream, tasks, base_model, targets, lora, family, method, workers)


def _evaluate_all(family, tasks, config, label: str) -> list[float]:
    return [accuracy(family, t, config, desc=f"eval {label} on {t.name}") for t in tasks]


def learn_stream(s: Session) -> StreamResults:
    """Train task by task (task j with the adapters of snapshot j+1); after each, evaluate every task.

    A joint method (``mtl``) trains once on every task; its single evaluation fills each row.
    """
    started = time.perf_counter()
    with no_adapters():
        results = StreamResults(base=_evaluate_all(s.family, s.tasks, s.config, "base"))
    results.timing["eval_s"] = time.perf_counter() - started
    routing = s.method.keeps_snapshots and not s.method.joint  # one adapter for all: nothing to route
    routed = RoutedRun(s.family, lambda: len(s.lora), s.config, s.tasks) if routing else None
    rounds = [s.tasks] if s.method.joint else [[task] for task in s.tasks]
    s.method.plan(len(rounds), s.base_model.model)
    for j, tasks in enumerate(rounds):
        label = "+".join(t.name for t in tasks)
        log.info("task %d/%d: %s (%d train, %d test)", j + 1, len(rounds), label,
                 sum(len(t.train) for t in tasks), sum(len(t.test) for t in tasks))
        started = time.perf_counter()
        # task j trains beside the adapters of snapshot j+1
        stats = learn_task(s.family, s.method, s.lora, j, tasks, s.config, s.method.snapshot(j + 1), s.workers)
        results.timing["train_s"] += time.perf_counter() - started
        if stats.private is not None:  # of train_s, the private adapters' share (absent without them)
            results.timing["private_s"] = results.timing.get("private_s", 0.0) + stats.private.seconds
        results.training.append({"task": label, **stats.summary()})
        started = time.perf_counter()
        _evaluate_step(s, j, routed, label, results)
        results.timing["eval_s"] += time.perf_counter() - started
    if s.method.joint:
        results.after = results.after * len(s.tasks)
    if routed is not None:
        results.routing, results.router_stats = routed.routing_summary(), routed.stats
    return results


def _evaluate_step(s: Session, j: int, routed: RoutedRun | None, label: str, results: StreamResults) -> None:
    """The tasks the metrics need in snapshot ``j+1`` (sum mode; task j's results kept per example), then routed.

    AA, BWT and forgetting read the tasks learnt so far (``i <= j``), FWT the next one (``i = j+1``)
    once; tasks further ahead are not evaluated (``None``). A joint method trains once and is
    evaluated on every task.
    """
    row = []
    with use_adapters(s.method.snapshot(j + 1)):
        for i, task in enumerate(s.tasks):
            if i > j + 1 and not s.method.joint:
                row.append(None)
                continue
            flags = example_scores(s.family, task, s.config, desc=f"eval after {label} on {task.name}")
            row.append(sum(flags) / len(flags))
            if i == j:
                own = flags
    results.after.append(row)
    if s.method.private_of(j) is not None:  # task j answered with its private adapter too
        with use_adapters(s.method.answering(j)):
            own = example_scores(s.family, s.tasks[j], s.config, desc=f"eval {s.tasks[j].name}, its own snapshot")
        results.answered[j] = sum(own) / len(own)
    if routed is not None:
        routed.learned(j, own)
        snapshots = {t.name: s.method.answering(k) for k, t in enumerate(s.tasks[:j + 1])}
        results.routed.append(routed.row(j, {**snapshots, SUMMED: s.method.snapshot(j + 1)}))


def library_tasks(s: Session, results: StreamResults) -> list[TaskArtifacts]:
    """Each task's manifest entry and tensors, for the run's library (``clora.library.build``)."""
    names = [t.name for t in s.tasks]
    # task name -> index of the adapter it owns (seq/mtl: one adapter, owned by the last task)
    owner = {name: j for j, name in enumerate(names)} if s.method.keeps_snapshots else {names[-1]: 0}
    owner = {name: s.method.adapter_of(j) for name, j in owner.items()}
    tasks = []
    for j, (task, spec) in enumerate(zip(s.tasks, s.stream.tasks)):
        data = data_reference(spec, s.stream, s.config.data_dir, max_train=s.config.max_train,
                              max_test=s.config.max_test, seed=s.config.seed)
        metrics = {"learned": results.after[j][j], "sum": results.after[-1][j]}
        if results.routed:  # what predict and serve answer; add-task's "before" column
            metrics["routed"] = results.routed[-1][j]
        snapshot = [n for n in names[:j + 1] if n in owner] or [names[-1]]
        entry = entry_of(task, method=s.config.method, rank=s.config.rank, snapshot=snapshot, data=data,
                         metrics=metrics)
        factors = s.method.library_factors(s.lora, owner[task.name]) if task.name in owner else None
        stats = results.router_stats[j] if j < len(results.router_stats) else None
        private = s.method.private_of(j)
        tasks.append(TaskArtifacts(entry, factors, s.method.reserved_by(j), stats, s.method.leftover_by(j),
                                   private=None if private is None else s.lora.factors(private)))
    return tasks


def write_run(s: Session, out: Path, report: Report, results: StreamResults) -> None:
    """Write the report files and the library into ``out``, atomically."""
    header = manifest_header(s.config, model=s.base_model.reference, fingerprint=s.base_model.fingerprint,
                             family=s.base_model.kind, targets=s.targets, layers=s.lora.layers,
                             router_layer=s.family.router_layer, router_tokens=s.family.router_tokens,
                             quantization={"method": s.base_model.quantization,
                                           "outside_linear": s.base_model.outside_linear_fingerprint})
    with staged_out_dir(out) as stage:
        write_report_files(stage, report)
        create_library(stage / "library", header, library_tasks(s, results))


def run_stream(config: RunConfig, *, model=None, tokenizer=None) -> Report:
    """Run ``config.stream`` end to end; returns the :class:`Report` also written to ``<out>/report.json``.

    ``model`` / ``tokenizer``: an already-loaded transformers model and tokenizer to use
    instead of ``config.model`` (clora adapts a copy; the object passed in is not changed).
    """
    out = config.out or default_out(config)
    check_out_dir(out)
    session = prepare(config, model=model, tokenizer=tokenizer)
    results = learn_stream(session)
    report = build_report(
        stream=session.stream.name, method=config.method, model=session.base_model.name,
        tasks=[t.name for t in session.tasks], task_metrics=[t.metric for t in session.tasks], base=results.base,
        matrices=_matrices(session, results),
        overlap=_overlap(session.lora, session.method.snapshot(len(session.tasks))), timing=results.timing,
        settings=_settings(session.config, session.targets),
        training=results.training, subspace=session.method.subspace_report(), capacity=_capacity(session),
        notes=session.method.notes)
    if results.routing:
        report.modes["routed"].extra.update(results.routing)
    if "routed" in report.modes:
        # a[i-1][i] in routed mode measures the router, not transfer: before task i is learnt it cannot be
        # routed to, so every input of it falls back or goes elsewhere (docs/report-format.md)
        report.modes["routed"].fwt = None
    if session.method.joint:
        _mark_not_continual(report)
    if session.workers.is_main:  # every process holds the same result; one writes it
        write_run(session, out, report, results)
    session.workers.barrier()
    report.out, report.main_process = Path(out), session.workers.is_main
    return report


def _matrices(s: Session, results: StreamResults) -> dict[str, list[list[float]]]:
    matrices = {"oracle": oracle_matrix(results.after, s.method.keeps_snapshots, results.answered),
                "sum": results.after}
    if results.routed:
        matrices["routed"] = results.routed
    return matrices


def _capacity(s: Session) -> list[dict]:
    """orth: per task, the directions it reserved and those left free, per module (``clora.adapters.capacity``)."""
    if not s.method.uses_subspace:
        return []
    d_in = {name: layer.d_in for name, layer in s.lora.layers.items()}
    rows = capacity_rows([t.name for t in s.tasks], s.method.reserved_counts(), d_in)
    return [{"task": r.task, "reserved": r.reserved, "free_after": r.free_after} for r in rows]


def _mark_not_continual(report: Report) -> None:
    """A joint run has one evaluation: transfer and forgetting are undefined, not zero."""
    for block in report.modes.values():
        block.bwt = block.forgetting = block.fwt = None
    report.notes.append("mtl trains once on the union of all tasks: every matrix row repeats its single "
                        "evaluation; BWT, forgetting and FWT are not defined")


def _overlap(lora: LoRASet, summed: list[int]) -> float | None:
    """Max over modules and pairs of the ``summed`` adapters (private ones act alone) of the largest
    principal cosine (DESIGN.md)."""
    indices = [i for i in summed if i < len(lora)]
    if len(indices) < 2:
        return None
    per_adapter = [lora.factors(i) for i in indices]
    return max(max_overlap([f[name][0] for f in per_adapter]) for name in lora.layers)


def run_settings(config: RunConfig) -> dict:
    """The settings a report records for ``config`` (its method's own knobs, resolved, included), less targets;
    a quantized base's quantization too (a full-precision run's report is as it was before quantized bases)."""
    quantized = {"quantize": config.quantize} if config.quantize not in (None, "none") else {}
    return {**{k: getattr(config, k) for k in SHARED_SETTINGS}, **quantized, **config.settings.recorded(config.lr)}


def _settings(config: RunConfig, targets) -> dict:
    return {**run_settings(config), "targets": list(targets)}

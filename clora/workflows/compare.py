"""``compare_methods``: several methods on the same stream, data, seed and settings."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clora.config import METHODS, SHARED_SETTINGS, RunConfig
from clora.data.stream import load_stream
from clora.errors import ConfigError
from clora.evaluation.plots import grouped_bars
from clora.evaluation.report import Report
from clora.settings import owners_of
from clora.training.distributed import launched_world_size
from clora.workflows.outdir import RUN_MARKER, check_out_dir

log = logging.getLogger("clora")
COMPARE_MARKER = "compare.json"
METRICS = ("average_accuracy", "bwt", "forgetting", "fwt")


def parse_methods(text: str) -> list[str]:
    """``"seq,inc,orth"`` -> ``["seq", "inc", "orth"]``, refusing unknown or repeated names."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"unknown method(s) {', '.join(unknown) or '(none given)'} (choose from {', '.join(METHODS)})")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"a method is listed twice in {text!r}")
    return methods


@dataclass
class MethodRow:
    """One method's line of a comparison: ``modes[mode][metric]`` (AA, BWT, forgetting, FWT), overlap, time."""

    modes: dict[str, dict[str, float | None]]
    routing_accuracy: float | None
    lr: float
    overlap: float | None
    train_s: float
    eval_s: float
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, report: Report) -> "MethodRow":
        routed = report.modes.get("routed")
        return cls(modes={mode: {k: getattr(block, k) for k in METRICS} for mode, block in report.modes.items()},
                   routing_accuracy=routed.extra.get("routing_accuracy") if routed else None,
                   lr=report.settings["lr"], overlap=report.overlap, train_s=report.timing["train_s"],
                   eval_s=report.timing["eval_s"], notes=list(report.notes))


@dataclass
class Comparison:
    """Several methods on one stream (``compare.json`` is ``to_dict()``); ``kept``: runs reused on resume."""

    stream: str
    model: str
    tasks: list[str]
    settings: dict
    methods: dict[str, MethodRow]
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["methods"] = {m: dataclasses.asdict(row) for m, row in self.methods.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Comparison":
        """A comparison read back from ``compare.json`` (rows without timing or notes get defaults)."""
        rows = {m: MethodRow(**{"routing_accuracy": None, "eval_s": 0.0, **row}) for m, row in data["methods"].items()}
        return cls(stream=data["stream"], model=data["model"], tasks=data["tasks"], settings=data["settings"],
                   methods=rows, kept=list(data.get("kept", [])))

    def __getitem__(self, key: str):
        """``table["methods"]``: the compare.json view, so code written against the dict keeps working."""
        return self.to_dict()[key]


def finished_report(config: RunConfig) -> Report | None:
    """The report of the finished run in ``config.out`` when it used the same stream, tasks,
    method, model and settings as ``config`` would; otherwise ``None`` (the method must run).

    What ``--resume`` keeps. The data must be the same too: each task's data reference in
    the run's library (absolute path, caps and seed) must be the one ``config`` resolves
    to, so a resumed comparison over another ``--data-dir`` runs every method again.
    """
    from clora.workflows.run import planned, run_settings

    path = config.out / RUN_MARKER
    try:
        report = Report.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):  # absent, unreadable or half-written: run it again
        return None
    settings = dict(report.settings)
    targets = settings.pop("targets", None)
    stream = load_stream(config.stream)
    config = planned(config, [t.kind for t in stream.tasks])
    same = (report.stream == stream.name and report.tasks == [t.name for t in stream.tasks]
            and report.method == config.method and report.model == config.model
            and settings == run_settings(config)
            and (config.targets is None or list(config.targets) == targets))
    return report if same and _same_data(config, stream) else None


def _same_data(config: RunConfig, stream) -> bool:
    """Did the run in ``config.out`` read each task from where ``config`` would (its library's data references)?"""
    from clora.data.loaders import data_reference
    from clora.library.layout import LibraryError, load_manifest

    try:
        recorded = [dict(entry.data) if entry.data else None for entry in load_manifest(config.out / "library").tasks]
    except LibraryError:
        return False
    wanted = [data_reference(spec, stream, config.data_dir, max_train=config.max_train, max_test=config.max_test,
                             seed=config.seed) for spec in stream.tasks]
    return recorded == wanted


def method_config(config: RunConfig, method: str, lr: float | None, knobs: Mapping) -> RunConfig:
    """``config`` for one compared ``method``: its own of ``knobs``, rate ``lr`` (``None``: its default),
    its run in ``config.out/<method>``."""
    return dataclasses.replace(config.for_method(method, knobs, lr), out=config.out / method)


def check_knobs(methods: list[str], knobs: Mapping) -> None:
    """Refuse a knob that no compared method has (it would change nothing)."""
    for key in knobs:
        owners = owners_of(key)
        if not set(owners) & set(methods):
            raise ConfigError(f"{key} is a setting of {', '.join(owners) or 'no method'}, which this comparison "
                              f"does not run", field=key)


def _reusable(config: RunConfig, methods: list[str], lr: float | None, knobs: Mapping) -> dict[str, Report]:
    """Finished runs under ``config.out`` that ``--resume`` keeps, by method."""
    kept = {}
    for method in methods:
        report = finished_report(method_config(config, method, lr, knobs))
        if report is not None:
            kept[method] = report
            log.info("== method %s: keeping the finished run in %s", method, config.out / method)
    return kept


def _check_compare_dir(out: Path, methods: list[str], resume: bool) -> None:
    """Refuse a folder that holds neither an earlier comparison nor nothing; say when --resume would help."""
    finished = [p.name for p in out.iterdir() if (p / RUN_MARKER).is_file()] if out.is_dir() else []
    if resume and finished:  # interrupted, with finished runs of other methods than these: keep them
        return
    if (out / COMPARE_MARKER).is_file() or resume:
        check_out_dir(out, COMPARE_MARKER)
        return
    unfinished = [m for m in methods if (out / m / RUN_MARKER).is_file()]
    if unfinished:
        raise ConfigError(f"output folder {str(out)!r} holds an unfinished comparison (finished: "
                          f"{', '.join(unfinished)}); resume it to keep those runs, or choose another output folder",
                          field="resume")
    check_out_dir(out, COMPARE_MARKER)


def _run_method(config: RunConfig, method: str, lr: float | None, knobs: Mapping,
                threads: int | None = None) -> Report:
    """One method's run into ``config.out/<method>``; returns its report (also used in a worker process)."""
    from clora.workflows.run import run_stream

    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # lanes share the cores instead of oversubscribing them
    return run_stream(method_config(config, method, lr, knobs))


def _parallel_reports(config: RunConfig, methods: list[str], lr: float | None, knobs: Mapping,
                      jobs: int) -> dict[str, Report]:
    """Reports per method, ``jobs`` methods at a time in fresh processes (spawned: no forked torch state)."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    quiet = dataclasses.replace(config, progress=False)  # bars from several processes would interleave
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_method, quiet, m, lr, knobs, threads): m for m in methods}
        log.info("running %s, %d at a time (%d thread(s) each)", ", ".join(methods), jobs, threads)
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()
            raise failed[0].exception()
    return {futures[f]: f.result() for f in futures}


def compare_methods(config: RunConfig, methods: list[str], out: Path, lr: float | None = None,
                    jobs: int = 1, resume: bool = False, knobs: Mapping | None = None) -> Comparison:
    """Run each method (a fresh model each time) into ``out/<method>`` and tabulate them.

    ``lr`` ``None`` gives each method its own default learning rate; a value is used for all.
    ``jobs`` > 1 runs that many methods at once, each in its own process with an equal
    share of the CPU threads; the results are the same as one at a time. ``resume`` keeps
    each method whose finished run in ``out/<method>`` used the same settings
    (``finished_report``) and runs only the others: an interrupted comparison goes on.
    ``knobs``: methods' own settings by name (``{"frame_lr": 0.01}``), each method taking its own; ``None``:
    ``config.settings``' (those of ``config.method``).
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}", field="jobs")
    if jobs > 1 and launched_world_size() > 1:
        raise ConfigError("parallel jobs run methods in processes of their own; under accelerate launch use one job "
                          "(the launched processes already share the work)", field="jobs")
    config = dataclasses.replace(config, out=out)
    load_stream(config.stream)  # a bad stream is refused before the first method starts
    if knobs is None:
        knobs = config.settings.to_dict()
    else:
        check_knobs(methods, knobs)
    kept = _reusable(config, methods, lr, knobs) if resume else {}
    if not kept:  # a folder with kept runs is an interrupted comparison, not a foreign one
        _check_compare_dir(out, methods, resume)
    todo = [m for m in methods if m not in kept]
    if jobs == 1 or len(todo) <= 1:
        reports = dict(kept)
        for method in todo:
            log.info("== method %s (%d of %d)", method, len(reports) + 1, len(methods))
            reports[method] = _run_method(config, method, lr, knobs)
    else:
        reports = {**kept, **_parallel_reports(config, todo, lr, knobs, min(jobs, len(todo)))}
    first = reports[methods[0]]
    table = Comparison(stream=first.stream, model=config.model, tasks=first.tasks,
                       settings={k: v for k, v in first.settings.items() if k in SHARED_SETTINGS + ("targets",)
                                 and k != "lr"},  # each method's own knobs are in its run's report
                       methods={m: MethodRow.of(reports[m]) for m in methods}, kept=[m for m in methods if m in kept])
    write_comparison(out, table)
    return table


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def comparison_markdown(table: Comparison | dict) -> str:
    """One row per method and mode: AA, BWT, forgetting, FWT (%), overlap, train seconds."""
    table = table.to_dict() if isinstance(table, Comparison) else table
    shared = ", ".join(f"{k} {v}" for k, v in (table.get("settings") or {}).items())
    lines = [f"# clora compare: {table['stream']}", "", f"model `{table['model']}`; tasks: {', '.join(table['tasks'])}",
             "", f"settings shared by every method: {shared}", ""]
    if table.get("kept"):
        lines += [f"kept from an earlier, interrupted invocation (--resume): {', '.join(table['kept'])}", ""]
    lines += [
             "| method | lr | mode | AA | BWT | forgetting | FWT | overlap | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    stored = []
    for method, row in table["methods"].items():
        overlap = "n/a" if row["overlap"] is None else f"{row['overlap']:.1e}"
        label = method
        if any("uses stored data" in note for note in row.get("notes", [])):
            label, stored = f"{method} *", stored + [method]
        for mode, m in row["modes"].items():
            lines.append(f"| {label} | {row.get('lr', 0):g} | {mode} | {_pct(m['average_accuracy'])} | {_pct(m['bwt'])} | "
                         f"{_pct(m['forgetting'])} | {_pct(m['fwt'])} | {overlap} | {row['train_s']:.0f} |")
    if stored:
        lines += ["", f"\\* {', '.join(stored)}: uses stored data (keeps earlier tasks' training examples and "
                      "trains on them again); the other methods keep none."]
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, table: Comparison) -> None:
    """``compare.json``, ``compare.md`` and ``compare.png`` (AA per method and mode)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(comparison_markdown(table), encoding="utf-8")
    bars = {m: {mode: (100 * block["average_accuracy"], None) for mode, block in row.modes.items()}
            for m, row in table.methods.items()}
    grouped_bars(out / "compare.png", bars, f"{table.stream}: average accuracy after the last task")
    # the marker goes last: its presence means the comparison is complete
    (out / COMPARE_MARKER).write_text(json.dumps(table.to_dict(), indent=2) + "\n", encoding="utf-8")

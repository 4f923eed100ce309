"""``run_stream``: train a stream task by task, evaluate after each, write the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from clora.config import RunConfig
from clora.evaluate import accuracy
from clora.families import FAMILIES
from clora.formats import load_tasks
from clora.library import write_library
from clora.lora import LoRASet, inject_lora
from clora.methods import make_method
from clora.models import load_base_model, weights_fingerprint
from clora.outdir import check_out_dir, staged_out_dir
from clora.report import build_report, oracle_matrix, write_report_files
from clora.seeding import seed_everything
from clora.stream import load_stream
from clora.subspace import max_overlap
from clora.train import replay_inputs, train_task

log = logging.getLogger("clora")


def default_out(config: RunConfig) -> Path:
    """``clora-runs/<stream>-<method>`` when no ``--out`` is given."""
    return Path("clora-runs") / f"{Path(config.stream).stem}-{config.method}"


def _evaluate_all(family, tasks, config, label: str) -> list[float]:
    return [accuracy(family, t, config, desc=f"eval {label} on {t.name}") for t in tasks]


def run_stream(config: RunConfig) -> dict:
    """Run ``config.stream`` end to end; returns the report (also written under ``config.out``)."""
    out = config.out or default_out(config)
    check_out_dir(out)
    stream = load_stream(config.stream)
    tasks = load_tasks(stream, config.data_dir, max_train=config.max_train, max_test=config.max_test, seed=config.seed)
    seed_everything(config.seed)
    base_model = load_base_model(config.model)
    fingerprint = weights_fingerprint(base_model.model)
    targets = config.targets or base_model.default_targets
    lora = LoRASet(inject_lora(base_model.model, targets, config.rank, config.scaling))
    family = FAMILIES[base_model.kind](base_model.model, base_model.tokenizer, config, lora.disabled)
    method = make_method(config)

    eval_s = time.perf_counter()
    with lora.disabled():
        base = _evaluate_all(family, tasks, config, "base")
    eval_s = time.perf_counter() - eval_s
    train_s, after, training = 0.0, [], []
    for j, task in enumerate(tasks):
        log.info("task %d/%d: %s (%d train, %d test)", j + 1, len(tasks), task.name, len(task.train), len(task.test))
        params = method.begin_task(lora, j)
        stats = train_task(family, task, params, config, task_index=j)
        started = time.perf_counter()
        method.end_task(lora, j, run_inputs=lambda: replay_inputs(family, task, config),
                        masks=lambda: family.token_mask)
        train_s += stats["seconds"] + time.perf_counter() - started
        training.append({"task": task.name, "steps": stats["steps"], "final_loss": stats["final_loss"]})
        lora.activate(method.snapshot(j + 1))
        started = time.perf_counter()
        after.append(_evaluate_all(family, tasks, config, f"after {task.name}"))
        eval_s += time.perf_counter() - started

    names = [t.name for t in tasks]
    adapter_of = {t.name: j for j, t in enumerate(tasks)} if method.keeps_snapshots else {names[-1]: 0}
    report = build_report(
        stream=stream.name, method=config.method, model=config.model, tasks=names, base=base,
        matrices={"oracle": oracle_matrix(after, method.keeps_snapshots), "sum": after},
        overlap=_overlap(lora), timing={"train_s": train_s, "eval_s": eval_s},
        extra={"settings": _settings(config, targets), "training": training,
               "subspace": method.subspace_report(), "notes": method.notes})
    with staged_out_dir(out) as stage:
        write_report_files(stage, report)
        entries = [{"name": t.name, "method": config.method, "rank": config.rank, "labels": t.labels,
                    "instruction": t.instruction, "triggers": t.triggers,
                    "snapshot": [n for n in names[:j + 1] if n in adapter_of] or [names[-1]]}
                   for j, t in enumerate(tasks)]
        write_library(stage / "library", model=config.model, fingerprint=fingerprint, kind=base_model.kind,
                      targets=targets, scaling=config.scaling, tasks=entries, lora=lora, adapter_of=adapter_of,
                      bases=getattr(method, "bases", {}))
    report["out"] = str(out)
    return report


def _overlap(lora: LoRASet) -> float | None:
    """Max over modules and adapter pairs of the largest principal cosine (DESIGN.md)."""
    if len(lora) < 2:
        return None
    per_adapter = [lora.factors(i) for i in range(len(lora))]
    return max(max_overlap([f[name][0] for f in per_adapter]) for name in lora.layers)


def _settings(config: RunConfig, targets) -> dict:
    keys = ("rank", "alpha", "epochs", "lr", "batch_size", "max_train", "max_test", "seed",
            "subspace", "energy", "retraction", "temperature", "max_length")
    settings = {k: getattr(config, k) for k in keys}
    settings["targets"] = list(targets)
    return settings

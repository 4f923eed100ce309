"""Building library versions: manifest headers, task entries and staged task folders."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from clora.config import RunConfig
from clora.library.layout import FORMAT_VERSION
from clora.library.manifest import Manifest
from clora.library.store import check_task_name, commit, free_task_dir, new_stage, write_lock
from clora.library.tensors import (ADAPTER_FILE, PRIVATE_FILE, ROUTER_FILE, SUBSPACE_FILE, save_adapter,
                                   save_router_stats, save_subspace)
from clora.routing.lda import TaskStats
from clora.data.task import DEFAULT_PROMPT, Task

#: RunConfig fields (shared by every method) that decide how adapters are built, applied and trained on;
#: kept per library, followed by the method's own settings (``MethodSettings.to_dict``)
LIBRARY_SETTINGS = ("rank", "alpha", "epochs", "min_steps", "lr", "batch_size", "seed", "temperature", "max_length",
                    "eval_batch_size")


def stored_settings(config: RunConfig) -> dict:
    """What a library keeps of ``config``: the shared settings, then the method's own knobs."""
    return {**{k: getattr(config, k) for k in LIBRARY_SETTINGS}, **config.settings.to_dict()}


def entry_of(task: Task, **kwargs) -> dict:
    """:func:`task_entry` for a loaded task (name, labels, instruction, prompt, triggers from it; a generation
    task's kind, metric and answer length too)."""
    entry = task_entry(task.name, task.labels, instruction=task.instruction, prompt=task.prompt,
                       triggers=task.triggers, **kwargs)
    if task.generative:
        entry.update(kind=task.kind, metric=task.metric, max_new_tokens=task.max_new_tokens)
    return entry


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def manifest_header(config: RunConfig, *, model: str, fingerprint: str, family: str, targets, layers,
                    router_layer: int | None = None, router_tokens: int | None = None,
                    quantization: dict | None = None) -> dict:
    """The version-independent part of a manifest (the ``tasks`` list starts empty). ``quantization``:
    ``{"method": none|int8|nf4, "outside_linear": the fingerprint no quantization changes}``."""
    return {"format_version": FORMAT_VERSION, "version": 0, "previous_version": None, "created": now(),
            "base_model": model, "base_fingerprint": fingerprint, "base_quantization": quantization,
            "family": family,
            "target_modules": list(targets),
            "modules": {n: {"d_in": layer.d_in, "d_out": layer.d_out, "fan_in_fan_out": layer.transposed}
                        for n, layer in layers.items()},
            "method": config.method, "scaling": config.scaling,
            "settings": stored_settings(config),
            "tasks": [], "reserved": [], "files": {},
            # the router's statistics are of this layer's hidden states over at most this many
            # tokens per input (clora.families.base.Family.features)
            "router": {"layer": router_layer, "tokens": router_tokens} if router_layer is not None else None}


def task_entry(name: str, labels: list[str], *, method: str, rank: int, snapshot: list[str], data: dict | None,
               metrics: dict, instruction: str = "", prompt: str = DEFAULT_PROMPT, triggers: dict | None = None,
               source: str = "trained") -> dict:
    """A manifest task entry; ``adapter`` / ``subspace`` paths are set when its folder is staged."""
    check_task_name(name)
    return {"name": name, "method": method, "rank": rank, "labels": list(labels),
            "instruction": instruction, "prompt": prompt, "triggers": dict(triggers or {}),
            "snapshot": list(snapshot), "adapter": None, "subspace": None, "router": None, "data": data,
            "metrics": metrics, "source": source, "created": now()}


@dataclass
class TaskArtifacts:
    """What one task leaves in a library: its manifest entry and the tensors its files hold.

    ``factors``: module -> ``(A (r, d_in), B (d_out, r))`` of the adapter the task owns, or None
    (seq/mtl tasks before the last own none); ``directions``: module -> ``U (d_in, k)``, the input
    directions it reserved (orth); ``router``: its routing statistics; ``leftover``: orth's
    attenuation factors, or None; ``private``: the factors of its private adapter (orth's
    ``private_rank``), or None.
    """

    entry: dict
    factors: dict | None = None
    directions: dict[str, torch.Tensor] | None = None
    router: TaskStats | None = None
    leftover: dict[str, torch.Tensor] | None = None
    private: dict | None = None


def next_manifest(manifest: Manifest, entry: dict | None = None, scores: dict[str, dict] | None = None,
                  router: dict | None = None) -> dict:
    """The next version's manifest dict: ``manifest`` with each task's ``metrics`` updated by ``scores[name]``
    (metadata only: adapter files stay as they are), the router's settings by ``router``, then ``entry`` added."""
    new = manifest.to_dict()
    if router:
        new["router"] = {**(new.get("router") or {}), **router}
    for task in new["tasks"]:
        if task["name"] in (scores or {}):
            task["metrics"] = {**(task.get("metrics") or {}), **scores[task["name"]]}
    if entry is not None:
        new["tasks"].append(entry)
    return new


def stage_task(folder: Path, task: TaskArtifacts, keep: set[str]) -> tuple[str, Path]:
    """Write a task's adapter, reserved directions and router statistics into a staging folder.

    Sets ``entry['adapter']`` / ``['private']`` / ``['subspace']`` / ``['router']`` to their final relative paths and
    returns ``(task folder, staging folder)`` for :func:`clora.library.store.commit`.
    """
    entry, factors, directions, router, leftover = (task.entry, task.factors, task.directions, task.router,
                                                    task.leftover)
    rel_dir = free_task_dir(folder, entry["name"], keep)
    stage = new_stage(folder)
    if factors is not None:
        save_adapter(stage / ADAPTER_FILE, factors, entry["name"])
        entry["adapter"] = f"{rel_dir}/{ADAPTER_FILE}"
    if task.private is not None:  # the key is written only where there is one: other manifests stay as they were
        save_adapter(stage / PRIVATE_FILE, task.private, entry["name"])
        entry["private"] = f"{rel_dir}/{PRIVATE_FILE}"
    has_leftover = bool(leftover) and any(f.shape[1] for f in leftover.values())
    if (directions and any(u.shape[1] for u in directions.values())) or has_leftover:
        save_subspace(stage / SUBSPACE_FILE, directions or {}, entry["name"], leftover if has_leftover else None)
        entry["subspace"] = f"{rel_dir}/{SUBSPACE_FILE}"
    if router is not None:
        save_router_stats(stage / ROUTER_FILE, router, entry["name"])
        entry["router"] = f"{rel_dir}/{ROUTER_FILE}"
    return rel_dir, stage


def create_library(folder: Path, header: dict, tasks: list[TaskArtifacts]) -> Manifest:
    """Write a new library at ``folder`` (empty or absent) as version 1; ``tasks`` in stream order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with write_lock(folder):
        staged, new = {}, {**header, "tasks": []}
        for task in tasks:
            rel_dir, stage = stage_task(folder, task, keep=set())
            staged[rel_dir] = stage
            new["tasks"].append(task.entry)
        return commit(folder, None, new, staged)

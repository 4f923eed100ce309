"""Library maintenance: list, show, verify, remove, import (rollback lives in ``store``)."""

from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from clora.data.task import DEFAULT_MAX_NEW_TOKENS, GENERATION_PROMPT
from clora.library.build import TaskArtifacts, stage_task, task_entry
from clora.library.layout import LibraryError, check_files, read_manifest, task_by_name, version_path
from clora.library.manifest import Manifest, on_disk
from clora.library.peft_io import peft_factors
from clora.library.readers import reading
from clora.library.store import (STAGE_PREFIX, check_task_name, commit, files_of, kept_files, previous_manifest,
                                 new_stage, stale_temp_files, write_lock)
from clora.library.tensors import load_adapter, load_directions, load_subspace, module_dims
from clora.routing.triggers import TriggerSet, parse_trigger_args
from clora.adapters.capacity import CapacityRow, capacity_markdown, capacity_rows
from clora.adapters.subspace import extend_basis, max_overlap


def capacity(folder: Path, manifest: Manifest | dict) -> dict[str, dict]:
    """Per module: how many of its ``d_in`` input directions the subspace reserves."""
    manifest = on_disk(manifest)
    reserved = {name: 0 for name in module_dims(manifest)}
    for name, u in load_subspace(folder, manifest).items():
        reserved[name] = int(u.shape[1])
    return {name: {"reserved": reserved[name], "d_in": d_in} for name, d_in in module_dims(manifest).items()}


def capacity_table(folder: Path, manifest: Manifest | dict) -> list[CapacityRow]:
    """Per task (then per removed task whose directions stay reserved): what it reserved and what was left free."""
    manifest = on_disk(manifest)
    dims = module_dims(manifest)
    entries = [(t["name"], t.get("subspace")) for t in manifest["tasks"]]
    entries += [(f"{r['name']} (removed)", r.get("subspace")) for r in manifest.get("reserved", [])]
    if not any(rel for _, rel in entries):
        return []
    counts = [{n: int(u.shape[1]) for n, u in load_directions(folder, rel, dims).items()} for _, rel in entries]
    return capacity_rows([name for name, _ in entries], counts, dims)


@dataclass
class LibraryInfo:
    """What ``library show`` prints: the manifest's description plus the subspace capacity per module."""

    format_version: int
    version: int
    previous_version: int | None
    base_model: str
    family: str
    method: str
    target_modules: list[str]
    settings: dict
    created: str | None
    updated: str | None
    tasks: list[dict]
    reserved: list[dict]
    capacity: dict[str, dict]
    #: orth: per task, the directions it reserved and those left free per module (``clora.adapters.capacity``)
    capacity_by_task: list[CapacityRow] = field(default_factory=list)
    #: how the base's linear layers were stored when the library was made: none, int8 or nf4
    quantization: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def capacity_lines(self) -> list[str]:
        """The per-task capacity table as markdown lines (empty for a library without a subspace)."""
        return capacity_markdown(self.capacity_by_task, {name: c["d_in"] for name, c in self.capacity.items()})


@dataclass
class Verification:
    """``problems`` make the library unusable; ``notes`` are harmless leftovers."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __iter__(self):
        """``problems, notes = verify(...)``, as before this was a dataclass."""
        return iter((self.problems, self.notes))


def show(folder: Path) -> LibraryInfo:
    """The manifest's description of the library plus the subspace capacity used per module."""
    with reading(folder) as typed:
        manifest = on_disk(typed)  # read only: no copy
        capacity_used = capacity(folder, manifest)
        by_task = capacity_table(folder, manifest)
        quantization = typed.quantization
    keys = ("format_version", "version", "previous_version", "base_model", "family", "method", "target_modules",
            "settings", "created", "updated")
    return LibraryInfo(**{k: manifest.get(k) for k in keys}, tasks=manifest["tasks"],
                       reserved=manifest.get("reserved", []), capacity=capacity_used, capacity_by_task=by_task,
                       quantization=quantization)


def _structure_problems(folder: Path, manifest: dict) -> list[str]:
    problems, names = [], [t["name"] for t in manifest["tasks"]]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"task name {dup!r} appears more than once")
    for task in manifest["tasks"]:
        unknown = [n for n in task.get("snapshot", []) if n not in names]
        if unknown:
            problems.append(f"task {task['name']!r}: snapshot names unknown task(s) {', '.join(unknown)}")
        for rel in [task[key] for key in ("adapter", "private") if task.get(key)]:
            try:
                for m, (a, b) in load_adapter(folder, rel, manifest["modules"]).items():
                    dims = manifest["modules"][m]
                    if a.shape[1] != dims["d_in"] or b.shape[0] != dims["d_out"] or a.shape[0] != b.shape[1]:
                        problems.append(f"{rel}: factors of {m} have wrong shapes")
                    elif not (torch.isfinite(a).all() and torch.isfinite(b).all()):
                        problems.append(f"{rel}: factors of {m} hold NaN or infinite values")
            except LibraryError as exc:
                problems.append(str(exc))
    missing = sorted(files_of(manifest) - set(manifest["files"]))
    problems += [f"{rel} is referenced but has no checksum in the manifest" for rel in missing]
    if not version_path(folder, manifest["version"]).is_file():
        problems.append(f"versions/{version_path(folder, manifest['version']).name} is missing")
    return problems


def _subspace_problems(folder: Path, manifest: dict) -> list[str]:
    try:
        bases = load_subspace(folder, manifest)
    except LibraryError as exc:
        return [str(exc)]
    return [f"the reserved subspace of {name} is not orthonormal" for name, u in bases.items()
            if u.shape[1] and not torch.allclose(u.T @ u, torch.eye(u.shape[1]), atol=1e-4)]


def verify(folder: Path) -> Verification:
    """Checksums and structure: problems make the library unusable; notes are harmless leftovers.

    The version is pinned while it is checked, so a writer committing meanwhile cannot
    remove its files (``clora.library.readers``).
    """
    folder = Path(folder)
    with reading(folder) as manifest:
        problems, notes = _verify_version(folder, on_disk(manifest))
    return Verification(problems, notes)


def _verify_version(folder: Path, manifest: dict) -> tuple[list[str], list[str]]:
    problems = check_files(folder, manifest)
    if not problems:
        problems += _structure_problems(folder, manifest)
    if not problems:
        problems += _subspace_problems(folder, manifest)
    notes = []
    try:
        previous = previous_manifest(folder, manifest)
        if previous is not None and check_files(folder, previous):
            notes.append("the previous version's files are incomplete: rollback is not available")
    except LibraryError as exc:
        notes.append(f"previous version unreadable ({exc}): rollback is not available")
    stale = sorted(p.name for p in folder.glob(STAGE_PREFIX + "*"))
    if stale:
        notes.append(f"{len(stale)} staging folder(s) of an interrupted write; the next write removes them")
    temps = stale_temp_files(folder)
    if temps:
        notes.append(f"{len(temps)} temporary file(s) of an interrupted write "
                     f"({', '.join(str(p.relative_to(folder)) for p in temps[:3])}); the next write removes them")
    return problems, notes


def remove(folder: Path, name: str, release: bool = False) -> Manifest:
    """Drop a task (and its adapter from every snapshot); its reserved directions stay unless ``release``."""
    folder = Path(folder)
    with write_lock(folder):
        manifest = read_manifest(folder)
        entry = task_by_name(manifest, name)
        new = copy.deepcopy(manifest)
        new["tasks"] = [t for t in new["tasks"] if t["name"] != name]
        for task in new["tasks"]:
            task["snapshot"] = [n for n in task["snapshot"] if n != name]
        new.setdefault("reserved", [])
        if release:
            new["reserved"] = [r for r in new["reserved"] if r["name"] != name]
        elif entry.get("subspace"):
            new["reserved"].append({"name": name, "subspace": entry["subspace"]})
        return commit(folder, manifest, new, {})


def import_peft(folder: Path, peft_dir: Path, name: str, labels: list[str], instruction: str = "",
                triggers: list[str] | None = None, generation: dict | None = None) -> tuple[Manifest, list[str]]:
    """Add a PEFT LoRA folder as a new task whose snapshot is that adapter alone.

    For libraries with a subspace the adapter's row space is reserved, so later tasks
    stay orthogonal to it. ``generation`` (``{"metric", "max_new_tokens"}``) makes it a
    generation task, which has no labels. Returns the committed manifest and notes.
    """
    folder = Path(folder)
    check_task_name(name)
    parsed_triggers = parse_trigger_args(list(triggers or []))
    TriggerSet.compile(name, parsed_triggers)  # a bad or pathological pattern is refused before anything is written
    if generation is not None and labels:
        raise LibraryError("a generation task has free-text answers, not labels", field="labels")
    if generation is None and (not labels or len(labels) < 2):
        raise LibraryError("an imported task needs at least two labels (the task's classes)", field="labels")
    with write_lock(folder):
        manifest = read_manifest(folder)
        if any(t["name"] == name for t in manifest["tasks"]):
            raise LibraryError(f"the library already has a task named {name!r}; choose another name", field="name")
        if manifest["method"] == "olie":
            raise LibraryError("an olie library applies multiplicative updates; a PEFT LoRA cannot join it")
        factors = peft_factors(peft_dir, manifest["modules"], manifest["scaling"])
        notes, directions = [], None
        earlier = [load_adapter(folder, t["adapter"], manifest["modules"]) for t in manifest["tasks"] if t.get("adapter")]
        if earlier:
            overlap = max(max_overlap([e[m][0] for e in earlier] + [factors[m][0]]) or 0.0 for m in factors)
            notes.append(f"the imported adapter was trained outside this library: overlap with earlier adapters {overlap:.2e}")
        if manifest["method"] == "orth":
            bases = load_subspace(folder, manifest)
            directions = {m: extend_basis(bases[m], factors[m][0].T)[:, bases[m].shape[1]:] for m in factors}
        entry = task_entry(name, labels, instruction=instruction, triggers=parsed_triggers,
                           method="peft", rank=max(a.shape[0] for a, _ in factors.values()), snapshot=[name],
                           data=None, metrics={}, source=f"peft:{Path(peft_dir).resolve()}")
        if generation is not None:
            entry.update(kind="generation", prompt=GENERATION_PROMPT, metric=generation.get("metric") or "exact_match",
                         max_new_tokens=generation.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        keep = kept_files(folder, manifest)
        rel_dir, stage = stage_task(folder, TaskArtifacts(entry, factors, directions), keep)
        new = copy.deepcopy(manifest)
        new["tasks"].append(entry)
        return commit(folder, manifest, new, {rel_dir: stage}), notes


def adopt_last_task(folder: Path, candidate: Path, base_version: int) -> Manifest:
    """Commit the last task of library ``candidate`` (a copy of ``folder`` with one task added) into ``folder``,
    which must still be at ``base_version``; its files are copied, the candidate's manifest becomes the next
    version."""
    folder, candidate = Path(folder), Path(candidate)
    with write_lock(folder):
        current = read_manifest(folder)
        if current["version"] != base_version:
            raise LibraryError(f"the library moved from version {base_version} to {current['version']} while the "
                               "candidate was built; promote again")
        new = copy.deepcopy(read_manifest(candidate))
        rel_dir = str(Path(new["tasks"][-1]["adapter"]).parent)
        stage = new_stage(folder)
        for path in (candidate / rel_dir).iterdir():
            shutil.copy2(path, stage / path.name)
        for key in ("files", "version", "previous_version", "updated"):
            new.pop(key, None)
        return commit(folder, current, new, {rel_dir: stage})

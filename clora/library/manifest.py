"""A library's manifest as frozen dataclasses: parsed and validated once at the disk edge.

``read_manifest`` checks the JSON (``clora.library.layout``, ``clora.library.schema``);
:meth:`Manifest.of` turns the checked dict into the typed form every layer above
``library/`` reads, with each reader's default in one place (``max_new_tokens``, the
``classification`` kind, ``accuracy``). The dict stays the on-disk form: writers build the
next version's dict from :meth:`Manifest.to_dict` and commit it (``clora.library.store``), so
a field this version does not know is carried over, never dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from clora.data.task import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, GENERATION_PROMPT, Example, Task


def _frozen(value) -> Mapping:
    """A read-only view of ``value`` (no copy: a manifest's dict is handed over to it, see ``Manifest.of``)."""
    return MappingProxyType(value if isinstance(value, dict) else dict(value or {}))


@dataclass(frozen=True)
class TaskEntry:
    """One task of a library version (``docs/library-format.md``, "tasks")."""

    name: str
    labels: tuple[str, ...] = ()
    kind: str = "classification"
    metric: str = "accuracy"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    instruction: str = ""
    prompt: str = ""
    triggers: Mapping = field(default_factory=dict)
    #: names of the tasks whose adapters answer this task (its snapshot)
    snapshot: tuple[str, ...] = ()
    #: library-relative paths of its files, or None where it has none
    adapter: str | None = None
    #: its private adapter (orth's ``private_rank``): acts only where this task's snapshot answers
    private: str | None = None
    subspace: str | None = None
    router: str | None = None
    method: str | None = None
    rank: int | None = None
    #: scores recorded when it was trained (``learned``, ``sum``, ``routed``), as fractions
    metrics: Mapping = field(default_factory=dict)
    #: where its examples are (a data reference: ``clora.data.loaders.load_referenced_task``), or None
    data: Mapping | None = None
    source: str = "trained"

    @classmethod
    def of(cls, entry: dict) -> TaskEntry:
        """The typed entry of a checked manifest's task dict."""
        kind = entry.get("kind") or "classification"
        default_prompt = GENERATION_PROMPT if kind == "generation" else DEFAULT_PROMPT
        return cls(name=entry["name"], labels=tuple(entry.get("labels") or ()), kind=kind,
                   metric=entry.get("metric") or "accuracy",
                   max_new_tokens=entry.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS,
                   instruction=entry.get("instruction") or "", prompt=entry.get("prompt") or default_prompt,
                   triggers=_frozen(entry.get("triggers")), snapshot=tuple(entry.get("snapshot") or ()),
                   adapter=entry.get("adapter"), private=entry.get("private"), subspace=entry.get("subspace"),
                   router=entry.get("router"),
                   method=entry.get("method"), rank=entry.get("rank"), metrics=_frozen(entry.get("metrics")),
                   data=_frozen(entry["data"]) if entry.get("data") else None,
                   source=entry.get("source") or "trained")

    @property
    def generation(self) -> bool:
        return self.kind == "generation"

    def as_task(self) -> Task:
        """The :class:`Task` it describes, enough to answer it (label set or answer length, prompt, triggers)."""
        placeholder = [Example("-", self.labels[0] if not self.generation else "-")]  # no examples are stored
        return Task(name=self.name, instruction=self.instruction, labels=list(self.labels), train=placeholder,
                    test=placeholder, prompt=self.prompt, triggers=dict(self.triggers), kind=self.kind,
                    metric=self.metric, max_new_tokens=self.max_new_tokens)

    def answer_fields(self) -> dict:
        """What answering it needs besides the prompt: the label set, or the metric and the answer length."""
        if self.generation:
            return {"kind": "generation", "metric": self.metric, "max_new_tokens": self.max_new_tokens}
        return {"labels": list(self.labels)}


@dataclass(frozen=True)
class Manifest:
    """One version of a library (``docs/library-format.md``, "manifest.json")."""

    version: int
    base_model: str
    base_fingerprint: str
    family: str
    target_modules: tuple[str, ...]
    method: str
    #: the training settings the library was made with (``clora.config.LIBRARY_SETTINGS``)
    settings: Mapping
    scaling: float | None
    #: module name -> ``{"d_in", "d_out", "fan_in_fan_out"}``
    modules: Mapping
    #: the router's stored settings (layer, tokens, threshold, margin, shrinkage, fallback), or None
    router: Mapping | None
    tasks: tuple[TaskEntry, ...]
    previous_version: int | None = None
    rolled_back_from: int | None = None
    #: how the base's linear layers were stored (none, int8, nf4) and the fingerprint of its weights outside
    #: them (``clora.families.quantization``); None in a library from before quantized bases (full precision)
    base_quantization: Mapping | None = None
    #: the checked dict it was read from: the on-disk form writers start the next version from
    raw: Mapping = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, manifest: dict) -> Manifest:
        """The typed form of a manifest dict that ``read_manifest`` (or ``parse_manifest``) has checked.

        The dict is taken over, not copied (a commit of a 100-task library spent a fifth of its time
        copying it): hand over a dict nothing else changes afterwards, as a freshly read or committed one.
        """
        return cls(version=manifest["version"], base_model=manifest["base_model"],
                   base_fingerprint=manifest["base_fingerprint"], family=manifest["family"],
                   target_modules=tuple(manifest["target_modules"]), method=manifest["method"],
                   settings=_frozen(manifest["settings"]), scaling=manifest.get("scaling"),
                   modules=_frozen(manifest.get("modules")),
                   router=_frozen(manifest["router"]) if manifest.get("router") else None,
                   tasks=tuple(TaskEntry.of(t) for t in manifest["tasks"]),
                   previous_version=manifest.get("previous_version"),
                   rolled_back_from=manifest.get("rolled_back_from"),
                   base_quantization=_frozen(manifest.get("base_quantization")), raw=_frozen(manifest))

    def to_dict(self) -> dict:
        """A deep copy of the on-disk dict (every field, known to this version or not)."""
        return copy.deepcopy(dict(self.raw))

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def quantization(self) -> str:
        """How the library's base was quantized: ``none``, ``int8`` or ``nf4``."""
        return (self.base_quantization or {}).get("method", "none")

    @property
    def rank(self) -> int | None:
        return self.settings.get("rank")

    def task(self, name: str) -> TaskEntry:
        """The entry of task ``name`` (KeyError naming it when absent)."""
        for entry in self.tasks:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def router_setting(self, key: str, default=None):
        """One of the router's stored settings, ``default`` when the library has none."""
        return (self.router or {}).get(key, default)


def on_disk(manifest: Manifest | Mapping) -> Mapping:
    """The on-disk dict (read-only) of a typed manifest; a dict as it is. For the library's own readers."""
    return manifest.raw if isinstance(manifest, Manifest) else manifest


def task_of(entry: TaskEntry | dict) -> Task:
    """The :class:`Task` a library entry (typed, or a manifest's task dict) describes."""
    return (entry if isinstance(entry, TaskEntry) else TaskEntry.of(entry)).as_task()

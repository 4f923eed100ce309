"""Serving a library: ``load_library(path).predict(texts)``, for the CLI, the server and Python users.

Modes: ``routed`` (the router picks each input's task and snapshot; unsure inputs fall
back), ``oracle`` (the snapshot of the task given), ``sum`` (every adapter) and ``base``
(no adapter). With ``task`` given, routing is skipped and the input is answered as that
task. Mixed batches run in one forward pass. A loaded library notices a newer version
on disk (``clora add-task``, ``library remove`` / ``rollback``) and switches to it
atomically: a prediction already running finishes on the version it started with.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from clora.data.task import Task
from clora.errors import CloraError, ConfigError, DataError
from clora.families.base import Answer
from clora.library.layout import MANIFEST, LibraryError, load_manifest
from clora.library.manifest import Manifest
from clora.library.readers import reading
from clora.library.tensors import load_router_stats
from clora.routing.router import SUMMED, Route, Router, RouterConfig, adapter_mask
from clora.serving.prediction import Prediction, probability_of
from clora.training.devices import resolve_device, resolve_precision
from clora.workflows.library_model import LibraryModel, can_reuse_base, open_library_model, reopen_library_model

MODES = ("routed", "oracle", "sum", "base")


def finite(x: float) -> float:
    """``x``, or 0.0 when it is NaN or infinite: every answer must be valid JSON."""
    return float(x) if math.isfinite(x) else 0.0


def check_text(text: str, position: int | None = None) -> None:
    """DataError unless ``text`` is valid Unicode (a lone surrogate such as ``"\\ud800"`` cannot be encoded, tokenized
    or written back as JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"input {position + 1}" if position is not None else "an input"
        raise DataError(f"{where} is not valid Unicode text (a lone surrogate at character {exc.start})",
                        field="inputs") from None


@dataclass(frozen=True)
class Query:
    """One input to answer: ``mode`` (routed, oracle, sum, base) and, optionally, the task to answer it as."""

    text: str
    mode: str = "routed"
    task: str | None = None
    #: ``(library version, task or None)``: the explicit triggers' verdict when already searched
    #: (``LoadedLibrary.search_triggers``); used only by the version it was searched in
    trigger: tuple[int, str | None] | None = None

    def check(self, tasks: dict) -> None:
        check_text(self.text)
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})", field="mode")
        if self.task is not None and self.task not in tasks:
            raise LibraryError(f"no task {self.task!r} in the library (tasks: {', '.join(tasks)})", field="task")
        if self.mode == "oracle" and self.task is None:
            raise ConfigError("mode oracle needs a task (the snapshot to run in)", field="task")




def _check_router_width(stats: list, manifest: Manifest, hidden: int | None) -> None:
    """Router statistics must describe the model's hidden states: ``d`` = its hidden size."""
    for task, s in zip(manifest.tasks, stats):
        if s is not None and hidden is not None and s.mean.shape[0] != hidden:
            raise LibraryError(f"{task.router}: router statistics of width {s.mean.shape[0]} for a model of "
                               f"hidden size {hidden}")


class LoadedVersion:
    """One library version, loaded: model, tasks, router."""

    def __init__(self, folder: Path, model, tokenizer, router_config: RouterConfig, device: str, dtype,
                 previous: "LoadedVersion | None" = None, quantize: str | None = None):
        with reading(folder) as manifest:  # the version's files stay while they are read, whatever writers do
            if previous is not None and can_reuse_base(previous.lm, manifest):
                # same base weights: reuse the loaded model, read only this version's adapters
                self.lm: LibraryModel = reopen_library_model(folder, previous.lm, manifest)
            else:
                self.lm = open_library_model(folder, model=model, tokenizer=tokenizer, manifest=manifest,
                                             progress=False, device=device, dtype=dtype, quantize=quantize)
            stats = [load_router_stats(folder, t.router) for t in manifest.tasks]
        _check_router_width(stats, manifest, getattr(self.lm.base_model.model.config, "hidden_size", None))
        self.version = manifest.version
        self.tasks = {t.name: t.as_task() for t in manifest.tasks}
        self.snapshots = self.lm.snapshots()  # and the summed adapters, a sum fallback's
        self.router = Router(list(self.tasks), stats, [t.triggers for t in self.tasks.values()], router_config)


class LoadedLibrary:
    """A library ready to answer; follows new versions on disk.

    Thread-safe without a lock around answering: each call passes its adapter selection
    down with it (``clora.adapters.selection``), so concurrent calls overlap and each
    gets the answers it would get alone.
    """

    def __init__(self, folder: Path, *, model=None, tokenizer=None, threshold: float | None = None,
                 margin: float | None = None, fallback: str | None = None, device: str = "cpu",
                 precision: str = "fp32", quantize: str | None = None):
        self.folder = Path(folder)
        self.quantize = quantize
        self.model, self.tokenizer = model, tokenizer
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.router_config = RouterConfig.of_library(load_manifest(self.folder).router, threshold=threshold,
                                                     margin=margin, fallback=fallback)
        #: the version answering now; a caller that reads it more than once holds one reference for the call,
        #: since ``refresh`` swaps it whole
        self.current: LoadedVersion = self._load()
        self._reload_lock = threading.Lock()
        self._failed_version, self._failures, self._retry_at = None, 0, 0.0
        self._disk_key, self._disk_version = None, None
        #: why the newest version on disk is not served (None when it is)
        self.reload_error: str | None = None
        #: the version being loaded right now (None when no load is in flight), for ``/health``
        self.loading: int | None = None

    def _load(self) -> LoadedVersion:
        previous = getattr(self, "current", None)
        return LoadedVersion(self.folder, self.model, self.tokenizer, self.router_config, self.device, self.dtype,
                             previous, self.quantize)

    @property
    def version(self) -> int:
        return self.current.version

    @property
    def base_model_name(self) -> str:
        """The base model the library names (its ``base_model``)."""
        return self.current.lm.manifest.base_model

    def tasks(self) -> list[dict]:
        current = self.current
        return [{"name": t.name, "labels": t.labels, "instruction": t.instruction, "triggers": t.triggers}
                for t in current.tasks.values()]

    def _version_on_disk(self):
        """The version ``manifest.json`` names (read again only when the file changed), or None."""
        try:
            stat = (self.folder / MANIFEST).stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key != self._disk_key:
                self._disk_version = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8")).get("version")
                self._disk_key = key
        except (OSError, ValueError, AttributeError):
            return None
        return self._disk_version

    def newer_on_disk(self) -> bool:
        """True when another version is on disk and is due to be loaded (not waiting out a failure's backoff)."""
        on_disk = self._version_on_disk()
        if on_disk is None or on_disk == self.current.version:
            return False
        return not (on_disk == self._failed_version and time.monotonic() < self._retry_at)

    def refresh(self) -> bool:
        """Load the version on disk if it is newer than the one in use; True when it switched.

        A version that fails to load is not retried on every call: the next try waits
        1 s, then 2, 4, ... up to a minute (``reload_error`` says why, for ``/health``); the
        version in use keeps answering meanwhile.
        """
        if not self.newer_on_disk():
            return False
        on_disk = self._disk_version
        with self._reload_lock:
            if on_disk == self.current.version:
                return True
            self.loading = on_disk
            try:
                self.current = self._load()  # one reference swap
            except CloraError as exc:
                self._backoff(on_disk, exc)
                return False
            finally:
                self.loading = None
            self._failed_version, self._failures, self.reload_error = None, 0, None
        return True

    def _backoff(self, version, exc: Exception) -> None:
        self._failures = self._failures + 1 if version == self._failed_version else 1
        self._failed_version = version
        self._retry_at = time.monotonic() + min(60.0, 2.0 ** (self._failures - 1))
        self.reload_error = f"version {version} failed to load ({exc}); still serving version {self.version}"

    def predict(self, texts: list[str], mode: str = "routed", task: str | list[str] | None = None) -> list[Prediction]:
        """One :class:`Prediction` per text: the answer, its ``answer_probability``, the task it was answered as,
        the router's confidence and why (``Prediction.to_dict()`` for JSON).

        ``task``: one task name for every text, or a list with one name per text (a mixed
        batch with known tasks: no routing, one forward pass).
        """
        if isinstance(task, (list, tuple)) and len(task) != len(texts):
            raise ConfigError(f"{len(task)} task names for {len(texts)} texts (give one per text)", field="task")
        tasks = list(task) if isinstance(task, (list, tuple)) else [task] * len(texts)
        return self.predict_queries([Query(text, mode, name) for text, name in zip(texts, tasks)])

    def predict_queries(self, queries: list["Query"]) -> list[Prediction]:
        """Answer inputs that each bring their own mode and task, in one mixed forward pass per batch.

        What a serving micro-batch is made of: requests of every kind answered together,
        each as it would be alone.
        """
        current = self.current  # this call uses this version to the end
        for q in queries:
            q.check(current.tasks)
        if not queries:
            return []
        routes = self._routes(current, queries)
        masks = torch.stack([self._mask(current, r, q.mode) for r, q in zip(routes, queries)])
        answer_tasks = [current.tasks[r.task or r.guess or next(iter(current.tasks))] for r in routes]
        answers = self._answer(current, answer_tasks, [q.text for q in queries], masks)
        return [Prediction(q.text, t.name, finite(r.confidence), a.text, r.source, probability_of(a))
                for q, r, t, a in zip(queries, routes, answer_tasks, answers)]

    def route(self, texts: list[str]) -> list[Route]:
        """The router's decision for each text (task or fallback, confidence, source), without answering."""
        current = self.current
        return self._routes(current, [Query(text) for text in texts])

    def token_ids(self, text: str) -> list[int]:
        """``text``'s token ids under the base model's tokenizer (no special tokens)."""
        return self.current.lm.family.tokenize(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        """Token ids back to text (special tokens dropped)."""
        return self.current.lm.family.tokenizer.decode(ids, skip_special_tokens=True)

    def clustering_space(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, reference)`` for clustering ``texts`` as the router sees them (``Router.clustering_space``)."""
        current = self.current
        return current.router.clustering_space(current.lm.family.router_features(texts))

    def search_triggers(self, queries: list["Query"]) -> list["Query"]:
        """``queries`` with their explicit triggers already searched (a server does this on a worker
        thread, so that a slow search holds up no batch); the verdict is kept per library version."""
        current = self.current
        verdicts = current.router.explicit([q.text for q in queries])
        return [replace(q, trigger=(current.version, v)) for q, v in zip(queries, verdicts)]

    def _routes(self, current: LoadedVersion, queries: list["Query"]) -> list[Route]:
        routes: list[Route | None] = [Route(q.task, 1.0, "given", guess=q.task) if q.task else None for q in queries]
        rest = [i for i, r in enumerate(routes) if r is None]
        if rest:
            texts = [queries[i].text for i in rest]
            known = [queries[i].trigger for i in rest]
            explicit = [v[1] for v in known] if all(v and v[0] == current.version for v in known) else None
            routed = current.router.route(texts, current.lm.family.router_features, explicit)
            for i, route in zip(rest, routed):
                routes[i] = route
        return routes

    def _mask(self, current: LoadedVersion, route: Route, mode: str) -> torch.Tensor:
        n = len(current.lm.lora)
        if mode == "base":
            return torch.zeros(n)
        if mode == "sum":
            mask = torch.zeros(n)
            mask[current.snapshots[SUMMED]] = 1.0  # private adapters never act in sum mode
            return mask
        return adapter_mask(route, n, current.snapshots, self.router_config.fallback)

    def _answer(self, current: LoadedVersion, tasks: list[Task], texts: list[str], masks: torch.Tensor) -> list[Answer]:
        lm, size = current.lm, current.lm.config.eval_batch_size
        out = []
        for start in range(0, len(texts), size):
            out += lm.family.answer_mixed(tasks[start:start + size], texts[start:start + size],
                                           masks[start:start + size].to(lm.family.device))
        return out


ROUTERS = ("lda", "arrow")


def load_library(path, router: str = "lda", *, model=None, tokenizer=None, threshold: float | None = None,
                 margin: float | None = None, fallback: str | None = None, device: str = "cpu",
                 precision: str | None = None, top_k: int | None = None,
                 temperature: float | None = None, quantize: str | None = None) -> LoadedLibrary:
    """Open a library for inference: ``load_library("run/library").predict(["some text"])``.

    ``router``: ``lda`` (clora's router: triggers, then the learned trigger, with a
    fallback) or ``arrow`` (PEFT's Arrow routing over the task adapters, for comparison;
    ``clora.serving.arrow``).

    ``model`` / ``tokenizer``: a model object instead of the library's base model (it must
    have the same weights); ``threshold``, ``margin``, ``fallback``: the lda router's settings
    (the library's stored ones by default, docs/routing.md); ``device`` (``cpu``, ``cuda``,
    ``cuda:N``, ``auto``); ``precision`` (``fp32`` by default, ``bf16``, ``fp16``, ``auto``);
    ``quantize`` (``none``, ``int8``, ``nf4``): the base's quantization, the library's by default (another is
    checked and warned about, docs/quantization.md);
    ``top_k`` (3) and ``temperature`` (1.0): Arrow's. A keyword the chosen router does not use is
    refused with one line rather than ignored.
    """
    if router not in ROUTERS:
        raise ConfigError(f"unknown router {router!r} (choose from {', '.join(ROUTERS)})", field="router")
    given = {k: v for k, v in (("model", model), ("tokenizer", tokenizer), ("threshold", threshold),
                               ("margin", margin), ("fallback", fallback), ("precision", precision),
                               ("quantize", quantize), ("top_k", top_k), ("temperature", temperature)) if v is not None}
    own = {"arrow": ("top_k", "temperature"),
           "lda": ("model", "tokenizer", "threshold", "margin", "fallback", "precision", "quantize")}[router]
    foreign = [k for k in given if k not in own]
    if foreign:
        raise ConfigError(f"{', '.join(foreign)} do{'es' if len(foreign) == 1 else ''} not apply to the {router} "
                          f"router (it takes {', '.join(own)} and device)", field=foreign[0])
    if router == "arrow":
        from clora.serving.arrow import ArrowLibrary

        return ArrowLibrary(Path(path), device=device, **given)
    return LoadedLibrary(Path(path), device=device, **{"precision": "fp32", **given})

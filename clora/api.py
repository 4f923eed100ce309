"""The Python API: what each ``clora`` command does, as functions and one ``Library`` object.

Everything here is importable from ``clora`` itself (``clora.open_library``). Results are
dataclasses (``Report``, ``AddTaskResult``, ``Prediction``, ``TaskRow``, ``LibraryInfo``,
``Verification``); errors are :class:`clora.CloraError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clora.data.task import DEFAULT_MAX_NEW_TOKENS
from clora.families.loading import resolve_model_path
from clora.inbox.steps import LibraryInbox
from clora.library import ops, store
from clora.library.layout import load_manifest
from clora.library.readers import reading
from clora.library.export_all import export_all
from clora.library.peft_io import export_peft
from clora.library.summary import TaskRow, list_tasks
from clora.serving.inference import LoadedLibrary, load_library
from clora.workflows.add_task import AddTaskRequest, AddTaskResult, add_task


@dataclass(frozen=True)
class Library:
    """An adapter library on disk: ``clora.open_library("run/library")``.

    Each method is one ``clora library ...`` / ``add-task`` / ``predict`` command; every
    write is a new atomic version (``docs/library-format.md``).
    """

    path: Path

    def tasks(self) -> list[TaskRow]:
        """One row per task (``clora library list``)."""
        return list_tasks(self.path)

    def show(self) -> ops.LibraryInfo:
        """Base model, method, settings, tasks and subspace capacity (``clora library show``)."""
        return ops.show(self.path)

    def verify(self) -> ops.Verification:
        """Checksums and structure (``clora library verify``); ``.ok`` is True when nothing is wrong."""
        return ops.verify(self.path)

    def add_task(self, name: str, train, test=None, *, format: str | None = None, labels: list[str] | None = None,
                 instruction: str = "", triggers: list[str] | None = None, text_field: str = "sentence",
                 label_field: str = "label", kind: str = "classification", metric: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, eval_files: dict | None = None, model: str | None = None,
                 epochs: int | None = None, min_steps: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, max_train: int | None = None, max_test: int | None = None,
                 seed: int | None = None, device: str = "auto", progress: bool = True,
                 threshold: float | None = None, margin: float | None = None,
                 fallback: str | None = None) -> AddTaskResult:
        """Train task ``name`` from the file ``train`` onto the library (``clora add-task``).

        The keywords are :class:`clora.workflows.add_task.AddTaskRequest`'s: the data's format and
        fields, the label set, instruction and triggers, generation settings, training settings
        (``None``: the library's; ``epochs`` given are trained exactly, else a small task trains for
        at least ``min_steps`` steps) and router settings to store.
        """
        return add_task(AddTaskRequest(
            library=self.path, name=name, train=Path(train), test=Path(test) if test is not None else None,
            format=format, labels=labels, instruction=instruction, triggers=list(triggers or []),
            text_field=text_field, label_field=label_field, kind=kind, metric=metric, max_new_tokens=max_new_tokens,
            eval_files={k: Path(v) for k, v in (eval_files or {}).items()}, model=model, epochs=epochs,
            min_steps=min_steps, lr=lr, batch_size=batch_size, max_train=max_train, max_test=max_test, seed=seed,
            device=device, progress=progress, threshold=threshold, margin=margin, fallback=fallback))

    def remove(self, task: str, release: bool = False) -> int:
        """Remove ``task`` (``clora library remove``); returns the new version."""
        return ops.remove(self.path, task, release=release).version

    def rollback(self) -> int:
        """Make the previous version current again (``clora library rollback``); returns the new version."""
        return store.rollback(self.path).version

    def export(self, task: str, out, base_model: str | None = None) -> Path:
        """``task``'s snapshot as a PEFT LoRA folder ``out`` (``clora library export``); ``base_model``: the name
        its config gives the base model (default: the library's, as a local path where it has one)."""
        with reading(self.path) as manifest:  # its files stay while they are copied, whatever writers do
            return export_peft(self.path, manifest, task, Path(out),
                               base_model or resolve_model_path(manifest.base_model))

    def export_all(self, out, base_model: str | None = None) -> list[Path]:
        """Every task's snapshot as ``out/<task>/`` PEFT folders, with ``out/README.md`` on serving them with
        vLLM (``clora library export --all``); returns the folders."""
        with reading(self.path) as manifest:
            return export_all(self.path, manifest, Path(out), base_model)

    def import_peft(self, peft_dir, name: str, labels: list[str] | None = None, instruction: str = "",
                    triggers: list[str] | None = None, generation: dict | None = None) -> int:
        """Add a PEFT LoRA folder as task ``name`` (``clora library import``); returns the new version.
        ``generation={"metric": "f1", "max_new_tokens": 32}`` imports a generation task (no labels)."""
        manifest, _notes = ops.import_peft(self.path, Path(peft_dir), name, labels or [], instruction, triggers,
                                           generation=generation)
        return manifest.version

    def inbox(self, folder=None) -> LibraryInbox:
        """The library's inbox: list, feedback, cluster, label, promote, drop (``clora inbox``)."""
        return LibraryInbox(self.path, Path(folder) if folder is not None else None)

    def load(self, router: str = "lda", *, model=None, tokenizer=None, threshold: float | None = None,
             margin: float | None = None, fallback: str | None = None, device: str = "cpu",
             precision: str | None = None, top_k: int | None = None,
             temperature: float | None = None, quantize: str | None = None) -> LoadedLibrary:
        """Open the library to answer inputs (``clora predict`` / ``serve``); the keywords are
        :func:`load_library`'s, and one the router does not use is refused."""
        return load_library(self.path, router, model=model, tokenizer=tokenizer, threshold=threshold, margin=margin,
                            fallback=fallback, device=device, precision=precision, top_k=top_k,
                            temperature=temperature, quantize=quantize)


def open_library(path) -> Library:
    """The library at ``path`` (refused with one line when it is not one)."""
    load_manifest(Path(path))  # fail now, with the reason, rather than at the first call
    return Library(Path(path))


def export_task(library, task: str, out) -> Path:
    """``task``'s snapshot in ``library`` as a PEFT LoRA folder ``out``."""
    return open_library(library).export(task, out)

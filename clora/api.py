"""The Python API: what each ``clora`` command does, as functions and one ``Library`` object.

Everything here is importable from ``clora`` itself (``clora.open_library``). Results are
dataclasses (``Report``, ``AddTaskResult``, ``Prediction``, ``TaskRow``, ``LibraryInfo``,
``Verification``); errors are :class:`clora.CloraError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clora.families.loading import resolve_model_path
from clora.inbox.steps import LibraryInbox
from clora.library import ops, store
from clora.library.layout import read_manifest
from clora.library.readers import reading
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

    def add_task(self, name: str, train, test=None, **options) -> AddTaskResult:
        """Train task ``name`` from the file ``train`` onto the library (``clora add-task``).

        ``options`` are the fields of :class:`clora.workflows.add_task.AddTaskRequest`
        (``labels``, ``instruction``, ``triggers``, ``epochs``, ``lr``, ``device``, ...).
        """
        return add_task(AddTaskRequest(library=self.path, name=name, train=Path(train),
                                       test=Path(test) if test is not None else None, **options))

    def remove(self, task: str, release: bool = False) -> int:
        """Remove ``task`` (``clora library remove``); returns the new version."""
        return ops.remove(self.path, task, release=release)["version"]

    def rollback(self) -> int:
        """Make the previous version current again (``clora library rollback``); returns the new version."""
        return store.rollback(self.path)["version"]

    def export(self, task: str, out) -> Path:
        """``task``'s snapshot as a PEFT LoRA folder ``out`` (``clora library export``)."""
        with reading(self.path) as manifest:  # its files stay while they are copied, whatever writers do
            return export_peft(self.path, manifest, task, Path(out), resolve_model_path(manifest["base_model"]))

    def import_peft(self, peft_dir, name: str, labels: list[str] | None = None, instruction: str = "",
                    triggers: list[str] | None = None, generation: dict | None = None) -> int:
        """Add a PEFT LoRA folder as task ``name`` (``clora library import``); returns the new version.
        ``generation={"metric": "f1", "max_new_tokens": 32}`` imports a generation task (no labels)."""
        manifest, _notes = ops.import_peft(self.path, Path(peft_dir), name, labels or [], instruction, triggers,
                                           generation=generation)
        return manifest["version"]

    def inbox(self, folder=None) -> LibraryInbox:
        """The library's inbox: list, feedback, cluster, label, promote, drop (``clora inbox``)."""
        return LibraryInbox(self.path, Path(folder) if folder is not None else None)

    def load(self, **options) -> LoadedLibrary:
        """Open the library to answer inputs (``clora predict`` / ``serve``); see :func:`load_library`."""
        return load_library(self.path, **options)


def open_library(path) -> Library:
    """The library at ``path`` (refused with one line when it is not one)."""
    read_manifest(Path(path))  # fail now, with the reason, rather than at the first call
    return Library(Path(path))


def export_task(library, task: str, out) -> Path:
    """``task``'s snapshot in ``library`` as a PEFT LoRA folder ``out``."""
    return open_library(library).export(task, out)

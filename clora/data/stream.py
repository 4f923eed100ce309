"""Stream files: an ordered list of task specs in YAML (schema in DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from clora.data.task import DEFAULT_MAX_NEW_TOKENS
from clora.errors import ConfigError, DataError

FORMATS = ("cl_benchmark", "jsonl", "json", "csv", "hf", "synthetic", "dataset", "trace", "superni")
#: formats whose answers are free text: their tasks are generation tasks
GENERATIVE_FORMATS = ("trace", "superni")


def _is_in_memory_data(data) -> bool:
    """A ``datasets.Dataset`` / ``DatasetDict``, a mapping of splits, or a list of row mappings."""
    if isinstance(data, list):
        return all(isinstance(row, dict) for row in data)
    if isinstance(data, dict):
        return all(_is_in_memory_data(split) or hasattr(split, "column_names") for split in data.values())
    return hasattr(data, "column_names")  # datasets.Dataset and DatasetDict both have it


@dataclass
class TaskSpec:
    """One task of a stream, before its data is read.

    From a stream file: ``format`` and ``path`` say where the data is. From Python, ``data``
    may hold it instead: a ``datasets.Dataset`` (split into train/test by ``test_size``),
    a ``datasets.DatasetDict`` or ``{"train": ..., "test": ...}`` (``train_split`` /
    ``test_split``), or a list of row dicts; ``format`` is then ``dataset``.

    ``kind: generation`` makes the targets free text, scored by ``metric`` (``exact_match``,
    ``f1``, ``rouge_l``; default ``rouge_l`` for TRACE and SuperNI files, else
    ``exact_match``) and answered greedily up to ``max_new_tokens``. ``input_field`` /
    ``target_field`` name the text and answer fields (aliases of ``text_field`` /
    ``label_field``).

    Rows labelled ``-`` or left empty (MNLI's test split has 131) carry no answer to score: they
    are skipped with a warning naming the count, or refused with ``unlabelled: error``.
    """

    name: str
    format: str | None = None
    instruction: str = ""
    path: str | None = None
    test_path: str | None = None
    text_field: str = "sentence"
    label_field: str = "label"
    labels: list[str] | None = None
    train_split: str = "train"
    test_split: str = "test"
    test_size: float = 0.2
    subset: str | None = None
    prompt: str | None = None
    triggers: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    data: object = field(default=None, repr=False, compare=False)
    kind: str = "classification"
    metric: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    input_field: str | None = None
    target_field: str | None = None
    #: rows whose label is ``-`` or empty (MNLI's unlabelled test rows): ``skip`` them with a note, or
    #: ``error`` (refuse the task, as a label outside the label set is refused)
    unlabelled: str = "skip"

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError(f"every task needs a non-empty 'name', got {self.name!r}")
        self._check_kind(where)
        if self.unlabelled not in ("skip", "error"):
            raise DataError(f"{where}: unlabelled must be skip or error, got {self.unlabelled!r}", field="unlabelled")
        if self.data is not None:
            if not _is_in_memory_data(self.data):
                raise DataError(f"{where}: data must be a datasets.Dataset, a DatasetDict, a mapping of splits or a "
                                f"list of row dicts, got {type(self.data).__name__}", field="data")
            self.format = self.format or "dataset"
        if self.format == "dataset" and self.data is None:
            raise DataError(f"{where}: format 'dataset' needs its data", field="data")
        if self.format is None:
            raise DataError(f"{where}: give a format ({', '.join(FORMATS)}) or the data itself", field="format")
        if self.format not in FORMATS:
            raise DataError(f"{where}: unknown format {self.format!r} (choose from {', '.join(FORMATS)})")
        if self.format not in ("synthetic", "dataset") and not self.path:
            raise DataError(f"{where}: format {self.format!r} needs a 'path'")
        if not isinstance(self.instruction, str):
            raise DataError(f"{where}: 'instruction' must be a string")
        if self.labels is not None:
            if not isinstance(self.labels, list) or not self.labels:
                raise DataError(f"{where}: 'labels' must be a non-empty list")
            self.labels = [str(label) for label in self.labels]
        if not isinstance(self.triggers, dict):
            raise DataError(f"{where}: 'triggers' must be a mapping of keywords / regex / prefixes lists")
        from clora.routing.triggers import TriggerSet

        try:
            TriggerSet.compile(self.name, self.triggers)  # fail at load time, not at the first input
        except ConfigError as exc:
            raise DataError(str(exc)) from None
        if isinstance(self.test_size, bool) or not isinstance(self.test_size, (int, float)) \
                or not 0.0 < float(self.test_size) < 1.0:
            raise DataError(f"{where}: test_size must be a number in (0, 1), got {self.test_size!r}")


    def _check_kind(self, where: str) -> None:
        from clora.data.task import GENERATION_METRICS, KINDS

        if self.format in GENERATIVE_FORMATS:
            self.kind = "generation"
        if self.kind not in KINDS:
            raise DataError(f"{where}: unknown kind {self.kind!r} (choose from {', '.join(KINDS)})", field="kind")
        if self.kind == "generation":
            if self.labels is not None:
                raise DataError(f"{where}: a generation task has free-text targets, not labels", field="labels")
            self.metric = self.metric or ("rouge_l" if self.format in GENERATIVE_FORMATS else "exact_match")
            if self.metric not in GENERATION_METRICS:
                raise DataError(f"{where}: unknown metric {self.metric!r} (choose from "
                                f"{', '.join(GENERATION_METRICS)})", field="metric")
        elif self.metric not in (None, "accuracy"):
            raise DataError(f"{where}: metric {self.metric!r} needs kind: generation (classification is scored by "
                            "accuracy)", field="metric")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise DataError(f"{where}: max_new_tokens must be a positive integer, got {self.max_new_tokens!r}",
                            field="max_new_tokens")
        for alias, field_name in (("input_field", "text_field"), ("target_field", "label_field")):
            value = getattr(self, alias)
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise DataError(f"{where}: {alias} must be a field name, got {value!r}", field=alias)
                setattr(self, field_name, value)


@dataclass
class Stream:
    """A named, ordered list of task specs; ``source`` is the file it came from (relative task
    paths are read beside it; ``None``: a stream made in Python, read from the working folder)."""

    name: str
    tasks: list[TaskSpec]
    source: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tasks, list) or not self.tasks or not all(isinstance(t, TaskSpec) for t in self.tasks):
            raise DataError(f"stream {self.name!r} needs a non-empty list of TaskSpec tasks", field="stream")
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"stream {self.name!r} repeats task name(s) {', '.join(dupes)}", field="stream")

    @property
    def folder(self) -> Path:
        """Where relative task paths are read from."""
        return self.source.parent if self.source is not None else Path.cwd()


def shipped_streams() -> list[str]:
    """Names of the stream files installed with clora."""
    root = resources.files("clora.streams")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_stream_path(name_or_path: str) -> Path:
    """A user's YAML file if ``name_or_path`` is one, else the shipped stream of that name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a folder named like a stream does not shadow it
        if not path.is_file():
            raise DataError(f"stream file {str(path)!r} not found")
        return path
    shipped = resources.files("clora.streams") / f"{name_or_path}.yaml"
    if not shipped.is_file() and path.is_dir():
        raise DataError(f"{str(path)!r} is a folder and no shipped stream is named so; give a YAML stream file")
    if not shipped.is_file():
        raise DataError(f"unknown stream {name_or_path!r} (shipped: {', '.join(shipped_streams())}; "
                        "or give the path of a YAML stream file)")
    return Path(str(shipped))


def _task_spec(entry, index: int) -> TaskSpec:
    if not isinstance(entry, dict):
        raise DataError(f"task #{index + 1} must be a mapping with name, format and instruction")
    known = {f.name for f in fields(TaskSpec)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise DataError(f"task #{index + 1} ({entry.get('name', '?')}): unknown key(s) {', '.join(unknown)}")
    missing = [k for k in ("name", "format") if k not in entry]
    if missing:
        raise DataError(f"task #{index + 1} is missing {', '.join(missing)}")
    return TaskSpec(**{"instruction": "", **entry})


def load_stream(name_or_path) -> Stream:
    """Parse and validate a stream (a shipped name or a YAML path); a :class:`Stream` is returned as it is."""
    if isinstance(name_or_path, Stream):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise DataError(f"a stream is a shipped name, a YAML file or a clora.Stream, got {type(name_or_path).__name__}",
                        field="stream")
    path = resolve_stream_path(str(name_or_path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"stream file {str(path)!r} is not valid YAML{where}") from None
    except OSError as exc:
        raise DataError(f"cannot read stream file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"stream file {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
        raise DataError(f"stream file {str(path)!r} needs a non-empty 'tasks' list")
    tasks = [_task_spec(entry, i) for i, entry in enumerate(raw["tasks"])]
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"stream file {str(path)!r} repeats task name(s) {', '.join(dupes)}")
    if any(t.format == "dataset" for t in tasks):
        raise DataError(f"stream file {str(path)!r}: format 'dataset' is for data given in Python")
    return Stream(name=str(raw.get("name") or path.stem), tasks=tasks, source=path)

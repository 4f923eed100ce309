"""Reading a task's examples from disk or a hub id, one loader per stream format.

``jsonl``, ``json``, ``csv`` and ``hf`` go through the ``datasets`` library, so any file
or data set it understands works. ``cl_benchmark`` is the O-LoRA folder layout:
``<dir>/{train,test}.json`` (lists of ``{"sentence", "label"}``) and ``labels.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

from clora.errors import DataError
from clora.data.stream import Stream, TaskSpec
from clora.data.synthetic import synthetic_examples
from clora.data.files import broken_json_line, csv_delimiter, read_json
from clora.data.generation_formats import load_superni, load_trace
from clora.data.task import DEFAULT_PROMPT, GENERATION_PROMPT, Example, Task

log = logging.getLogger("clora")
_FILE_BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv"}


def resolve_path(spec: TaskSpec, stream: Stream, data_dir: Path | None) -> Path:
    """Where a task's data lives: under ``data_dir`` when given, else beside the stream file."""
    path = Path(spec.path).expanduser()
    if path.is_absolute():
        return path
    if spec.format == "cl_benchmark":
        if data_dir is None:
            raise DataError(f"task {spec.name!r} uses format cl_benchmark, which is read from a data folder: give one",
                            field="data_dir")
        return Path(data_dir) / path
    return (Path(data_dir) if data_dir is not None else stream.folder) / path


def resolve_test_path(spec: TaskSpec, stream: Stream, data_dir: Path | None) -> TaskSpec:
    """``spec`` with a relative ``test_path`` read from where its ``path`` is (beside the stream file or
    under ``data_dir``), not from the working folder."""
    if not spec.test_path or Path(spec.test_path).expanduser().is_absolute():
        return spec
    where = resolve_path(dataclasses.replace(spec, path=spec.test_path), stream, data_dir)
    return dataclasses.replace(spec, test_path=str(where))


def check_paths(stream: Stream, data_dir: Path | None) -> None:
    """Fail early, naming every missing folder or file, before any model is loaded."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataError(f"data dir {str(data_dir)!r} not found")
    missing = []
    for spec in stream.tasks:
        if spec.format in ("synthetic", "hf", "dataset"):
            continue
        path = resolve_path(spec, stream, data_dir)
        if not path.exists():
            missing.append(f"{spec.name} ({path})")
        test_path = resolve_test_path(spec, stream, data_dir).test_path
        if test_path and not Path(test_path).exists():
            missing.append(f"{spec.name} ({test_path})")
    if missing:
        raise DataError(f"stream {stream.name!r}: missing task data: {'; '.join(missing)}")


def _rows_to_examples(rows, spec: TaskSpec, source: str, label_names=None) -> list[Example]:
    examples = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source}: row {i + 1} is not an object")
        for key, setting in ((spec.text_field, "text_field"), (spec.label_field, "label_field")):
            if key not in row:
                found = ", ".join(repr(str(k)) for k in list(row)[:12]) or "none"
                raise DataError(f"{source}: row {i + 1} has no field {key!r} (task {spec.name!r}); its fields: "
                                f"{found} (name the right one as the task's {setting})", field=setting)
        target = row[spec.label_field]
        if label_names is not None and isinstance(target, int):
            target = label_names[target]
        examples.append(Example(text=str(row[spec.text_field]), target=str(target)))
    return examples


def _load_cl_benchmark(spec: TaskSpec, root: Path):
    train = _rows_to_examples(read_json(root / "train.json"), spec, str(root / "train.json"))
    test = _rows_to_examples(read_json(root / "test.json"), spec, str(root / "test.json"))
    labels = spec.labels
    if labels is None and (root / "labels.json").exists():
        labels = [str(label) for label in read_json(root / "labels.json")]
    return train, test, labels


def _hf_split_to_examples(split, spec: TaskSpec, source: str) -> list[Example]:
    feature = split.features.get(spec.label_field) if hasattr(split, "features") else None
    names = getattr(feature, "names", None)
    return _rows_to_examples(split, spec, source, label_names=names)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a chained exception, as one short line (datasets wraps the parser's)."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _reader_options(spec: TaskSpec, files: dict[str, str]) -> dict:
    """Keywords for ``datasets``' reader: a CSV file's delimiter, sniffed from its first line."""
    if spec.format != "csv":
        return {}
    delimiter = csv_delimiter(Path(next(iter(files.values()))))
    if delimiter != ",":
        log.info("task %r: reading %s with delimiter %r", spec.name, next(iter(files.values())), delimiter)
    return {"delimiter": delimiter}


def _load_with_datasets(spec: TaskSpec, path: Path | str, seed: int):
    import datasets

    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to load ..." line would precede ours
    try:
        return _read_with_datasets(datasets, spec, path, seed)
    finally:
        datasets.logging.set_verbosity(verbosity)


def _read_with_datasets(datasets, spec: TaskSpec, path: Path | str, seed: int):
    files = None
    try:
        if spec.format == "hf":
            loaded = datasets.load_dataset(str(path), spec.subset)
        elif spec.test_path:  # separate training and test files
            files = {spec.train_split: str(path), spec.test_split: str(spec.test_path)}
            absent = [f for f in files.values() if not Path(f).is_file()]
            if absent:
                raise DataError(f"task {spec.name!r}: file {absent[0]!r} not found")
            loaded = datasets.load_dataset(_FILE_BUILDERS[spec.format], data_files=files, **_reader_options(spec, files))
        elif Path(path).is_dir():
            ext = "jsonl" if spec.format == "jsonl" else spec.format
            files = {s: str(Path(path) / f"{s}.{ext}") for s in (spec.train_split, spec.test_split)}
            absent = [f for f in files.values() if not Path(f).is_file()]
            if absent:
                raise DataError(f"task {spec.name!r}: file {absent[0]!r} not found")
            loaded = datasets.load_dataset(_FILE_BUILDERS[spec.format], data_files=files, **_reader_options(spec, files))
        else:
            files = {"rows": str(path)}
            loaded = datasets.load_dataset(_FILE_BUILDERS[spec.format], data_files=files, **_reader_options(spec, files))
            if len(loaded["rows"]) < 2:
                raise DataError(f"task {spec.name!r}: {str(path)!r} has {len(loaded['rows'])} row(s); a task needs at "
                                "least 2 (one to train on, one to test)")
            split = loaded["rows"].train_test_split(test_size=spec.test_size, seed=seed)
            loaded = {spec.train_split: split["train"], spec.test_split: split["test"]}
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs one line
        where = broken_json_line(files) if spec.format in ("jsonl", "json") and files else None
        reason = where or f"cannot read {str(path)!r} ({_root_cause(exc)})"
        raise DataError(f"task {spec.name!r}: {reason}") from None
    for split in (spec.train_split, spec.test_split):
        if split not in loaded:
            raise DataError(f"task {spec.name!r}: {str(path)!r} has no split {split!r}")
    try:  # arrow decodes text lazily: a byte that is not UTF-8 surfaces only now
        train = _hf_split_to_examples(loaded[spec.train_split], spec, f"{path} [{spec.train_split}]")
        test = _hf_split_to_examples(loaded[spec.test_split], spec, f"{path} [{spec.test_split}]")
    except UnicodeDecodeError as exc:
        raise DataError(f"task {spec.name!r}: {str(path)!r} is not UTF-8 text ({exc.reason})") from None
    return train, test, spec.labels


def _load_in_memory(spec: TaskSpec, seed: int):
    """``(train, test, labels)`` from data given in Python (``TaskSpec.data``)."""
    import datasets

    data = spec.data
    if isinstance(data, list):
        data = datasets.Dataset.from_list(data)
    if isinstance(data, dict) or hasattr(data, "keys"):  # DatasetDict or a mapping of splits
        missing = [s for s in (spec.train_split, spec.test_split) if s not in data]
        if missing:
            raise DataError(f"task {spec.name!r}: its data has no split {missing[0]!r} (splits: "
                            f"{', '.join(map(str, data.keys()))})", field="data")
        splits = {s: datasets.Dataset.from_list(data[s]) if isinstance(data[s], list) else data[s]
                  for s in (spec.train_split, spec.test_split)}
    else:
        split = data.train_test_split(test_size=spec.test_size, seed=seed)
        splits = {spec.train_split: split["train"], spec.test_split: split["test"]}
    train = _hf_split_to_examples(splits[spec.train_split], spec, f"task {spec.name!r} [{spec.train_split}]")
    test = _hf_split_to_examples(splits[spec.test_split], spec, f"task {spec.name!r} [{spec.test_split}]")
    return train, test, spec.labels


def _subsample(examples: list[Example], limit: int | None, rng: random.Random) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return list(examples)
    return rng.sample(examples, limit)


UNLABELLED = ("-", "")


def _without_unlabelled(spec: TaskSpec, split: str, examples: list[Example], labels) -> list[Example]:
    """``examples`` less the rows whose label is a no-label marker (``-`` or empty) outside the label set."""
    known = set(labels or ())
    labelled = [e.target in known or e.target.strip() not in UNLABELLED for e in examples]
    skipped = [e.target for e, ok in zip(examples, labelled) if not ok]
    if skipped:
        log.warning("task %r: %d %s row(s) have no label (%s) and were skipped (unlabelled: error refuses them)",
                    spec.name, len(skipped), split, ", ".join(sorted({repr(t) for t in skipped})))
    return [e for e, ok in zip(examples, labelled) if ok]


def load_task(spec: TaskSpec, stream: Stream, data_dir: Path | None = None, *,
              max_train: int | None = None, max_test: int | None = None, seed: int = 0) -> Task:
    """Read one task's examples, cap them, and validate the label set."""
    spec = resolve_test_path(spec, stream, data_dir)
    instruction = spec.instruction
    if spec.format == "synthetic":
        train, test, labels = synthetic_examples(spec.name, spec.options, seed=seed)
        labels = spec.labels or labels
    elif spec.format in ("trace", "superni"):
        reader = load_trace if spec.format == "trace" else load_superni
        train, test, definition = reader(spec, resolve_path(spec, stream, data_dir), seed)
        labels, instruction = [], instruction or definition or ""
    elif spec.format == "dataset":
        train, test, labels = _load_in_memory(spec, seed)
    elif spec.format == "cl_benchmark":
        train, test, labels = _load_cl_benchmark(spec, resolve_path(spec, stream, data_dir))
    elif spec.format == "hf":
        local = resolve_path(spec, stream, data_dir)
        train, test, labels = _load_with_datasets(spec, local if local.exists() else spec.path, seed)
    else:
        train, test, labels = _load_with_datasets(spec, resolve_path(spec, stream, data_dir), seed)
    generative = spec.kind == "generation"
    if not generative and spec.unlabelled == "skip":
        train, test = (_without_unlabelled(spec, name, rows, labels) for name, rows in (("training", train), ("test", test)))
    if generative:
        labels = []
    elif labels is None:  # infer a stable label set from the training data
        labels = sorted({ex.target for ex in train})
    elif not labels:
        raise DataError(f"task {spec.name!r}: its answers are free text; declare kind: generation", field="kind")
    # Validate every row (labels in the label set, or non-empty targets) before capping, then cap reproducibly.
    task = Task(name=spec.name, instruction=instruction, labels=labels, train=train, test=test,
                prompt=spec.prompt or (GENERATION_PROMPT if generative else DEFAULT_PROMPT),
                triggers=dict(spec.triggers), kind=spec.kind, metric=spec.metric or "accuracy",
                max_new_tokens=spec.max_new_tokens)
    rng = random.Random(seed)
    task.train = _subsample(task.train, max_train, rng)
    task.test = _subsample(task.test, max_test, rng)
    return task


def data_reference(spec: TaskSpec, stream: Stream, data_dir: Path | None, *, max_train: int | None,
                   max_test: int | None, seed: int) -> dict | None:
    """What a library keeps to re-read a task's test data later: the spec with absolute paths.

    ``None`` for data given in Python (``format: dataset``): there is nothing to re-read.
    """
    if spec.format == "dataset":
        return None
    spec = resolve_test_path(spec, stream, data_dir)
    ref = {k: v for k, v in vars(spec).items() if v is not None and k != "data"}
    if spec.format != "synthetic":
        local = resolve_path(spec, stream, data_dir)
        if spec.format != "hf" or local.exists():
            ref["path"] = str(local.resolve())
    if spec.test_path:
        ref["test_path"] = str(Path(spec.test_path).expanduser().resolve())
    ref.update(max_train=max_train, max_test=max_test, seed=seed)  # both caps decide the test sample
    return ref


def load_referenced_task(ref: dict) -> Task:
    """Re-read a task from a library's data reference (see :func:`data_reference`)."""
    fields = {k: v for k, v in ref.items() if k not in ("max_train", "max_test", "seed")}
    spec = TaskSpec(**fields)
    anchor = Stream(name="library", tasks=[spec])
    return load_task(spec, anchor, None, max_train=ref.get("max_train"), max_test=ref.get("max_test"),
                     seed=ref.get("seed", 0))


def load_tasks(stream: Stream, data_dir: Path | None = None, **kwargs) -> list[Task]:
    """All tasks of a stream, in order (paths are checked first, all at once)."""
    check_paths(stream, data_dir)
    return [load_task(spec, stream, data_dir, **kwargs) for spec in stream.tasks]

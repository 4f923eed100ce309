"""Readers for the file formats of generative continual-learning benchmarks.

- ``trace``: TRACE (Wang et al., 2023). A task folder holds ``train.json`` and
  ``test.json`` (``eval.json`` is not read), each a JSON list of
  ``{"prompt": ..., "answer": ...}``. A single such file is split by ``test_size``.
- ``superni``: a Super-NaturalInstructions task file (Wang et al., 2022): ``{"Definition":
  ["..."], "Instances": [{"input": ..., "output": ["...", ...]}, ...]}``. The definition
  becomes the task's instruction unless the stream gives one. The first output is the
  target. The instances are split by ``test_size`` (or a folder holds ``train.json`` and
  ``test.json`` in that format).

``input_field`` / ``target_field`` rename the fields of a TRACE file.
"""

from __future__ import annotations

import random
from pathlib import Path

from clora.data.files import read_json
from clora.data.stream import TaskSpec
from clora.data.task import Example
from clora.errors import DataError


def _split(examples: list[Example], spec: TaskSpec, seed: int, source: Path):
    if len(examples) < 2:
        raise DataError(f"task {spec.name!r}: {str(source)!r} has {len(examples)} example(s); a task needs at least "
                        "2 (one to train on, one to test)")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = min(len(examples) - 1, max(1, round(spec.test_size * len(examples))))
    return [examples[i] for i in order[n_test:]], [examples[i] for i in order[:n_test]]


def _field(row, name: str, i: int, source: Path, spec: TaskSpec):
    if not isinstance(row, dict):
        raise DataError(f"{source}: item {i + 1} is not an object")
    if name not in row:
        raise DataError(f"{source}: item {i + 1} has no field {name!r} (task {spec.name!r})")
    return row[name]


def _trace_examples(path: Path, spec: TaskSpec) -> list[Example]:
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: a TRACE file is a JSON list of {{\"prompt\", \"answer\"}} objects")
    text_key = spec.text_field if spec.text_field != "sentence" else "prompt"
    target_key = spec.label_field if spec.label_field != "label" else "answer"
    return [Example(str(_field(row, text_key, i, path, spec)), str(_field(row, target_key, i, path, spec)))
            for i, row in enumerate(rows)]


def load_trace(spec: TaskSpec, path: Path, seed: int):
    """``(train, test, instruction)`` of a TRACE task folder or file."""
    if path.is_dir():
        return _trace_examples(path / "train.json", spec), _trace_examples(path / "test.json", spec), None
    return (*_split(_trace_examples(path, spec), spec, seed, path), None)


def _superni_examples(path: Path, spec: TaskSpec) -> tuple[list[Example], str | None]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("Instances"), list):
        raise DataError(f"{path}: a SuperNI task file is an object with an 'Instances' list")
    definition = data.get("Definition")
    definition = definition[0] if isinstance(definition, list) and definition else definition
    examples = []
    for i, row in enumerate(data["Instances"]):
        outputs = _field(row, "output", i, path, spec)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        if not outputs or not str(outputs[0]).strip():
            raise DataError(f"{path}: item {i + 1} has an empty output (task {spec.name!r})")
        examples.append(Example(str(_field(row, "input", i, path, spec)), str(outputs[0])))
    return examples, definition if isinstance(definition, str) else None


def load_superni(spec: TaskSpec, path: Path, seed: int):
    """``(train, test, instruction)`` of a SuperNI task file (or a folder of ``train.json`` / ``test.json``)."""
    if path.is_dir():
        train, definition = _superni_examples(path / "train.json", spec)
        test, _ = _superni_examples(path / "test.json", spec)
        return train, test, definition
    examples, definition = _superni_examples(path, spec)
    return (*_split(examples, spec, seed, path), definition)

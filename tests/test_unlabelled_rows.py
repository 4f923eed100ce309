"""Rows without a label (MNLI's test split marks 131 with ``-``) are skipped with a warning, or refused."""

import json
import logging

import pytest

from clora.data.loaders import load_task
from clora.data.stream import Stream, TaskSpec
from clora.errors import DataError


def _folder(tmp_path, test_labels):
    root = tmp_path / "NLI" / "X"
    root.mkdir(parents=True)
    (root / "train.json").write_text(json.dumps([{"sentence": f"s{i}", "label": lab}
                                                 for i, lab in enumerate(["yes", "no", "-", "yes"])]))
    (root / "test.json").write_text(json.dumps([{"sentence": f"t{i}", "label": lab} for i, lab in enumerate(test_labels)]))
    return tmp_path


def _load(tmp_path, **spec):
    stream = Stream(name="s", tasks=[TaskSpec(name="x", format="cl_benchmark", path="NLI/X", **spec)])
    return load_task(stream.tasks[0], stream, tmp_path)


def test_unlabelled_rows_are_skipped_with_a_warning_naming_the_count(tmp_path):
    root = _folder(tmp_path, ["yes", "-", "no", "-", "", "yes"])
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # on clora's own logger: the CLI stops it propagating to the root
    log = logging.getLogger("clora")
    log.addHandler(handler)
    try:
        task = _load(root)
    finally:
        log.removeHandler(handler)
    assert [e.target for e in task.test] == ["yes", "no", "yes"] and [e.text for e in task.train] == ["s0", "s1", "s3"]
    assert task.labels == ["no", "yes"]  # '-' is not inferred as a label
    messages = [r.getMessage() for r in records]
    assert "task 'x': 3 test row(s) have no label ('', '-') and were skipped" in messages[1]
    assert "task 'x': 1 training row(s) have no label ('-')" in messages[0]


def test_a_declared_label_that_looks_like_a_marker_is_kept(tmp_path):
    task = _load(_folder(tmp_path, ["yes", "-"]), labels=["yes", "no", "-"])
    assert [e.target for e in task.test] == ["yes", "-"]


def test_unlabelled_error_keeps_the_strict_behaviour(tmp_path):
    with pytest.raises(DataError, match="label '-' is not in its label set"):
        _load(_folder(tmp_path, ["yes", "-"]), labels=["yes", "no"], unlabelled="error")
    with pytest.raises(DataError, match="unlabelled must be skip or error, got 'maybe'"):
        TaskSpec(name="x", format="synthetic", unlabelled="maybe")

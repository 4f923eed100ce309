import json
from pathlib import Path

import pytest
from conftest import shared_data_or_skip

from clora.errors import DataError
from clora.data.loaders import load_task, load_tasks
from clora.data.stream import Stream, TaskSpec

ROWS = [{"sentence": f"text number {i}", "label": ["pos", "neg"][i % 2]} for i in range(10)]


def _stream(tmp_path: Path, spec: TaskSpec) -> Stream:
    return Stream(name="s", tasks=[spec], source=tmp_path / "s.yaml")


def _spec(fmt, path=None, **kw):
    return TaskSpec(name="t", format=fmt, instruction="Is it pos or neg?", path=path, **kw)


def _write_cl_benchmark(folder: Path, train=ROWS, test=ROWS[:4], labels=("pos", "neg")):
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    (folder / "labels.json").write_text(json.dumps(list(labels)))


def test_cl_benchmark_layout(tmp_path):
    _write_cl_benchmark(tmp_path / "TC" / "t")
    task = load_task(_spec("cl_benchmark", "TC/t"), _stream(tmp_path, _spec("cl_benchmark", "t")), tmp_path)
    assert task.labels == ["pos", "neg"]  # order from labels.json
    assert len(task.train) == 10 and len(task.test) == 4
    assert task.train[0].text == "text number 0" and task.train[0].target == "pos"


def test_jsonl_directory_with_splits(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:3]))
    task = load_task(_spec("jsonl", "d"), _stream(tmp_path, _spec("cl_benchmark", "t")))
    assert (len(task.train), len(task.test)) == (10, 3)
    assert task.labels == ["neg", "pos"]  # inferred and sorted


def test_json_single_file_is_split_reproducibly(tmp_path):
    (tmp_path / "all.json").write_text(json.dumps(ROWS))
    spec = _spec("json", "all.json", test_size=0.3)
    a = load_task(spec, _stream(tmp_path, spec))
    b = load_task(spec, _stream(tmp_path, spec))
    assert (len(a.train), len(a.test)) == (7, 3)
    assert a.test == b.test


def test_csv_with_custom_fields(tmp_path):
    lines = ["review,stars"] + [f"great thing {i},{5 if i % 2 else 1}" for i in range(8)]
    (tmp_path / "r.csv").write_text("\n".join(lines))
    spec = _spec("csv", "r.csv", text_field="review", label_field="stars", labels=["1", "5"], test_size=0.25)
    task = load_task(spec, _stream(tmp_path, spec))
    assert {ex.target for ex in task.train + task.test} == {"1", "5"}
    assert task.train[0].text.startswith("great thing")


def test_hf_format_through_datasets_on_local_folder(tmp_path):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:2]))
    spec = _spec("hf", str(folder))
    task = load_task(spec, _stream(tmp_path, spec))
    assert (len(task.train), len(task.test)) == (10, 2)


def test_synthetic_is_deterministic_and_conflicting():
    spec0 = TaskSpec(name="a", format="synthetic", instruction="x", options={"shift": 0, "n_train": 50, "n_test": 10})
    spec1 = TaskSpec(name="b", format="synthetic", instruction="x", options={"shift": 1, "n_train": 50, "n_test": 10})
    s = Stream("s", [spec0, spec1], Path("s.yaml"))
    a, a2, b = load_task(spec0, s), load_task(spec0, s), load_task(spec1, s)
    assert a.train == a2.train and len(a.train) == 50
    assert a.labels == b.labels  # shared label set ...
    cue_a = {ex.text.split()[0]: ex.target for ex in a.train}
    from clora.data.synthetic import CUES, cue_label
    assert all(cue_label(i, 0) != cue_label(i, 1) for i in range(len(CUES)))  # ... mapped differently
    assert cue_a


def test_caps_sample_reproducibly(tmp_path):
    _write_cl_benchmark(tmp_path / "t")
    spec = _spec("cl_benchmark", "t")
    a = load_task(spec, _stream(tmp_path, spec), tmp_path, max_train=3, max_test=2, seed=1)
    b = load_task(spec, _stream(tmp_path, spec), tmp_path, max_train=3, max_test=2, seed=1)
    assert len(a.train) == 3 and len(a.test) == 2 and a.train == b.train


# ---- errors -----------------------------------------------------------------------------

def test_malformed_json_names_file_and_line(tmp_path):
    folder = tmp_path / "t"
    _write_cl_benchmark(folder)
    (folder / "train.json").write_text('[{"sentence": "a", "label": "pos"},\n oops]')
    with pytest.raises(DataError, match=r"train.json' is not valid JSON \(line 2"):
        load_task(_spec("cl_benchmark", "t"), _stream(tmp_path, _spec("cl_benchmark", "t")), tmp_path)


def test_label_outside_label_set(tmp_path):
    _write_cl_benchmark(tmp_path / "t", train=ROWS + [{"sentence": "x", "label": "maybe"}])
    with pytest.raises(DataError, match="label 'maybe' is not in its label set"):
        load_task(_spec("cl_benchmark", "t"), _stream(tmp_path, _spec("cl_benchmark", "t")), tmp_path)


def test_task_with_no_examples(tmp_path):
    _write_cl_benchmark(tmp_path / "t", train=[])
    with pytest.raises(DataError, match="has no training examples"):
        load_task(_spec("cl_benchmark", "t"), _stream(tmp_path, _spec("cl_benchmark", "t")), tmp_path)


def test_missing_field(tmp_path):
    _write_cl_benchmark(tmp_path / "t", train=[{"text": "a", "label": "pos"}])
    with pytest.raises(DataError, match="has no field 'sentence'"):
        load_task(_spec("cl_benchmark", "t"), _stream(tmp_path, _spec("cl_benchmark", "t")), tmp_path)


def test_missing_folders_are_all_named_at_once(tmp_path):
    specs = [TaskSpec(name=n, format="cl_benchmark", instruction="", path=f"X/{n}") for n in ("a", "b")]
    with pytest.raises(DataError, match=r"missing task data: a \(.*\); b \("):
        load_tasks(Stream("s", specs, tmp_path / "s.yaml"), tmp_path)


def test_missing_data_dir(tmp_path):
    specs = [TaskSpec(name="a", format="cl_benchmark", instruction="", path="X/a")]
    with pytest.raises(DataError, match="data dir .* not found"):
        load_tasks(Stream("s", specs, tmp_path / "s.yaml"), tmp_path / "nope")


def test_cl_benchmark_needs_data_dir(tmp_path):
    specs = [TaskSpec(name="a", format="cl_benchmark", instruction="", path="X/a")]
    with pytest.raises(DataError, match="read from a data folder: give one"):
        load_tasks(Stream("s", specs, tmp_path / "s.yaml"), None)


def test_unreadable_csv_is_one_line(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"\x00\x01\x02 not,a\ncsv")
    spec = _spec("csv", "bad.csv")
    with pytest.raises(DataError):
        load_task(spec, _stream(tmp_path, spec))


def test_shared_cl_benchmark_data_loads():
    root = shared_data_or_skip()
    spec = TaskSpec(name="agnews", format="cl_benchmark", instruction="topic?", path="TC/agnews")
    task = load_task(spec, Stream("s", [spec], Path("s.yaml")), root, max_train=20, max_test=10)
    assert task.labels == ["World", "Sports", "Business", "Science or Technology"]
    assert len(task.train) == 20

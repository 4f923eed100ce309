from importlib import resources

import pytest

from clora.errors import DataError
from clora.data.stream import load_stream, shipped_streams


def test_every_shipped_stream_validates():
    names = shipped_streams()
    assert "demo" in names and "cl-benchmark-4" in names
    for name in names:
        stream = load_stream(name)
        assert stream.tasks, name


def test_shipped_streams_are_package_data():
    assert (resources.files("clora.streams") / "demo.yaml").is_file()


def test_user_stream_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ntasks:\n  - {name: a, format: synthetic, instruction: hi}\n")
    stream = load_stream(str(path))
    assert stream.name == "mine" and stream.tasks[0].name == "a" and stream.source == path


def test_unknown_stream_lists_shipped_ones():
    with pytest.raises(DataError, match=r"unknown stream 'nope' \(shipped: .*demo"):
        load_stream("nope")


def test_missing_stream_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_stream(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize("text, message", [
    ("tasks: [\n  - name: a\n", "not valid YAML at line"),
    ("name: x\n", "needs a non-empty 'tasks' list"),
    ("tasks:\n  - {name: a, format: parquet, path: p}\n", "unknown format 'parquet'"),
    ("tasks:\n  - {name: a, format: csv}\n", "needs a 'path'"),
    ("tasks:\n  - {name: a, format: synthetic, colour: red}\n", "unknown key"),
    ("tasks:\n  - {format: synthetic}\n", "missing name"),
    ("tasks:\n  - {name: a, format: synthetic}\n  - {name: a, format: synthetic}\n", "repeats task name"),
])
def test_malformed_streams(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_stream(str(path))


@pytest.mark.parametrize("name", ["standard-order1", "standard-order2", "standard-order3", "long"])
def test_benchmark_streams_name_their_missing_folders(name, tmp_path):
    from clora.data.loaders import load_tasks

    for present in ("TC/dbpedia", "SC/amazon", "TC/agnews", "SC/yelp"):
        (tmp_path / present).mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing task data: .*yahoo \("):
        load_tasks(load_stream(name), tmp_path)


def test_standard_orders_follow_the_literature():
    orders = {n: [t.name for t in load_stream(n).tasks] for n in ("standard-order1", "standard-order2", "standard-order3")}
    assert orders == {"standard-order1": ["dbpedia", "amazon", "yahoo", "agnews"],
                      "standard-order2": ["dbpedia", "amazon", "agnews", "yahoo"],
                      "standard-order3": ["yahoo", "amazon", "agnews", "dbpedia"]}
    assert len(load_stream("long").tasks) == 15


def test_a_relative_test_path_is_read_beside_the_stream_file(tmp_path, monkeypatch):
    import json

    from clora.data.loaders import data_reference, load_tasks
    from clora.data.stream import load_stream

    folder = tmp_path / "streams"
    folder.mkdir()
    rows = [{"sentence": f"row {i}", "label": "ab"[i % 2]} for i in range(6)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (folder / "s.yaml").write_text("tasks:\n  - {name: t, format: jsonl, path: train.jsonl, test_path: test.jsonl}\n")
    monkeypatch.chdir(tmp_path)  # not the stream's folder
    stream = load_stream(str(folder / "s.yaml"))
    task = load_tasks(stream)[0]
    assert [e.text for e in task.test] == ["row 0", "row 1"] and len(task.train) == 6
    ref = data_reference(stream.tasks[0], stream, None, max_train=None, max_test=None, seed=0)
    assert ref["test_path"] == str((folder / "test.jsonl").resolve())

"""Generation tasks from files and streams: TRACE, SuperNI and jsonl/csv with named fields, the demo-gen
stream end to end, and the bad inputs a user can give, each one line and a non-zero exit."""

import json

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli
from clora.data.loaders import load_task
from clora.data.stream import Stream, TaskSpec, load_stream

ROWS = [("apple oven", "red oven"), ("river boat", "green harbor"), ("stone flour", "blue recipe"),
        ("cloud mast", "yellow mast"), ("lamp spoon", "red spoon")]


def _load(tmp_path, **spec):
    stream = Stream(name="s", tasks=[TaskSpec(name="t", **spec)], source=tmp_path / "s.yaml")
    return load_task(stream.tasks[0], stream, None, seed=0)


def test_a_trace_folder_and_a_trace_file(tmp_path):
    folder = tmp_path / "trace"
    folder.mkdir()
    for split, rows in (("train", ROWS[:4]), ("test", ROWS[4:])):
        (folder / f"{split}.json").write_text(json.dumps([{"prompt": p, "answer": a} for p, a in rows]))
    task = _load(tmp_path, format="trace", path="trace")
    assert task.generative and task.metric == "rouge_l" and task.labels == []
    assert [(e.text, e.target) for e in task.train] == ROWS[:4] and task.test[0].target == "red spoon"
    (tmp_path / "one.json").write_text(json.dumps([{"prompt": p, "answer": a} for p, a in ROWS]))
    task = _load(tmp_path, format="trace", path="one.json", metric="exact_match", test_size=0.2)
    assert len(task.train) == 4 and len(task.test) == 1 and task.metric == "exact_match"


def test_a_superni_task_file(tmp_path):
    data = {"Definition": ["Name the colour and the object."],
            "Instances": [{"id": str(i), "input": p, "output": [a, "other"]} for i, (p, a) in enumerate(ROWS)]}
    (tmp_path / "task001.json").write_text(json.dumps(data))
    task = _load(tmp_path, format="superni", path="task001.json")
    assert task.instruction == "Name the colour and the object." and task.metric == "rouge_l"
    assert sorted((e.text, e.target) for e in task.train + task.test) == sorted(ROWS)  # the first output
    assert task.format_prompt("x") == "Name the colour and the object.\nx\nAnswer:"
    assert _load(tmp_path, format="superni", path="task001.json", instruction="Mine").instruction == "Mine"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_jsonl_and_csv_with_named_fields(fmt, tmp_path):
    path = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"question": p, "reply": a}) + "\n" for p, a in ROWS))
    else:
        path.write_text("question,reply\n" + "".join(f"{p},{a}\n" for p, a in ROWS))
    task = _load(tmp_path, format=fmt, path=path.name, kind="generation", metric="f1", input_field="question",
                 target_field="reply")
    assert task.metric == "f1" and sorted((e.text, e.target) for e in task.train + task.test) == sorted(ROWS)


def test_the_demo_gen_stream_is_shipped_and_generative():
    stream = load_stream("demo-gen")
    assert [t.kind for t in stream.tasks] == ["generation"] * 4
    task = load_task(stream.tasks[0], stream, None, max_train=5, max_test=5)
    assert task.metric == "exact_match" and len(task.train[0].target.split()) == 2


def test_demo_gen_runs_and_seq_forgets(tiny_model_dirs, tmp_path):
    out = tmp_path / "seq"
    result = CliRunner().invoke(cli, ["run", "demo-gen", "--model", str(tiny_model_dirs["llama"]), "--method", "seq",
                                      "--max-train", "200", "--max-test", "24", "--epochs", "10", "--lr", "0.01",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["task_metrics"] == ["exact_match"] * 4
    assert "cooking (exact_match)" in (out / "report.md").read_text()
    from clora.serving.inference import load_library

    answer = load_library(out / "library").predict(["apple oven the recipe"], mode="oracle", task="cooking")[0]
    assert answer.task == "cooking" and isinstance(answer.prediction, str)
    sum_mode = report["modes"]["sum"]
    assert max(sum_mode["accuracy_matrix"][j][j] for j in range(4)) > 0.3  # it learns the phrases...
    assert sum_mode["bwt"] < -0.1  # ...and seq forgets them


def _stream(tmp_path, entry: str):
    (tmp_path / "s.yaml").write_text("tasks:\n  - " + entry + "\n")
    return str(tmp_path / "s.yaml")


@pytest.mark.parametrize("case,entry,rows,fragment", [
    ("missing target field", "{name: t, format: jsonl, path: d.jsonl, kind: generation, target_field: reply}",
     [{"sentence": "a b", "label": "x"}] * 4, "has no field 'reply'"),
    ("empty target", "{name: t, format: jsonl, path: d.jsonl, kind: generation}",
     [{"sentence": "a b", "label": "x"}] * 4 + [{"sentence": "c", "label": "  "}] * 2, "has an empty target"),
    ("unknown metric", "{name: t, format: jsonl, path: d.jsonl, kind: generation, metric: bleu}",
     [{"sentence": "a b", "label": "x"}] * 4, "unknown metric 'bleu'"),
    ("metric on classification", "{name: t, format: jsonl, path: d.jsonl, metric: f1}",
     [{"sentence": "a b", "label": "x"}] * 4, "metric 'f1' needs kind: generation"),
    ("labels on generation", "{name: t, format: jsonl, path: d.jsonl, kind: generation, labels: [a, b]}",
     [{"sentence": "a b", "label": "x"}] * 4, "a generation task has free-text targets, not labels"),
    ("unknown kind", "{name: t, format: jsonl, path: d.jsonl, kind: regression}",
     [{"sentence": "a b", "label": "x"}] * 4, "unknown kind 'regression'"),
])
def test_bad_generation_input_is_one_line(case, entry, rows, fragment, tiny_model_dirs, tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(cli, ["run", _stream(tmp_path, entry), "--model", str(tiny_model_dirs["llama"]),
                                      "--out", str(tmp_path / "out"), "--quiet"])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_a_generation_task_on_an_encoder_is_refused(tiny_model_dirs, tmp_path):
    result = CliRunner().invoke(cli, ["run", "demo-gen", "--model", str(tiny_model_dirs["bert"]),
                                      "--out", str(tmp_path / "out"), "--quiet"])
    assert_one_line_error(result, "generation task(s) cooking, sailing, finance, astronomy need a causal or seq2seq")

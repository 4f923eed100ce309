"""A new user's own small tasks on the real default model: routing must fire (issue: 47 of 48 fell back).

Three tasks of 60 examples with distinct vocabulary (support tickets, product reviews,
news; ``clora.testing.small_tasks``), MiniLM, ``clora run --max-train 60 --epochs 1``,
then ``clora predict`` on fresh inputs of those kinds and of a fourth, unseen domain.
"""

import json

import pytest
from click.testing import CliRunner

from clora.cli.main import cli
from clora.testing.small_tasks import TASKS, small_task, unseen_inputs


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    lines, fresh = ["tasks:"], {}
    for task in TASKS:
        train, fresh[task] = small_task(task, n_train=60, n_fresh=40)
        (root / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train + fresh[task][:10]))
        lines.append(f"  - {{name: {task}, format: jsonl, path: {task}.jsonl, test_size: 0.15}}")
    (root / "mine.yaml").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["run", str(root / "mine.yaml"), "--out", str(root / "run"), "--max-train", "60",
                                      "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "run" / "library", {t: rows[10:] for t, rows in fresh.items()}  # 30 never seen per task


def _predict(library, rows, tmp_path):
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(cli, ["predict", str(library), "--input", str(path)])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    summary = [line for line in result.output.splitlines() if line.startswith("routing:")]
    return answers, summary[0]


def test_fresh_inputs_are_routed_to_their_own_task(small_library, tmp_path):
    library, fresh = small_library
    rows = [{"input": r["sentence"], "task": task} for task, task_rows in fresh.items() for r in task_rows]
    answers, summary = _predict(library, rows, tmp_path)
    own = sum(a["source"] == "learned" and a["task"] == r["task"] for a, r in zip(answers, rows)) / len(rows)
    wrong = sum(a["source"] == "learned" and a["task"] != r["task"] for a, r in zip(answers, rows)) / len(rows)
    print(f"\nown {own:.1%}, wrong {wrong:.1%}; {summary}")
    assert own >= 0.9 and wrong <= 0.02
    assert f"of {len(rows)} with a known task" in summary


def test_inputs_of_an_unseen_domain_fall_back(small_library, tmp_path):
    library, _ = small_library
    answers, summary = _predict(library, [{"input": text} for text in unseen_inputs(40)], tmp_path)
    fallback = sum(a["source"] == "fallback" for a in answers) / len(answers)
    print(f"\nunseen fallback {fallback:.1%}; {summary}")
    assert fallback >= 0.8

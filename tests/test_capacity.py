"""orth's subspace budget: every planned task keeps room, the table of what each task reserved, the warnings."""

import pytest
import torch
from click.testing import CliRunner

from clora.adapters import LoRASet, inject_lora, use_adapters
from clora.adapters.capacity import capacity_markdown, capacity_rows, low_capacity_warnings, reservation_budget
from clora.cli.main import cli
from clora.config import RunConfig
from clora.errors import ConfigError
from clora.evaluation.report import Report, report_markdown
from clora.methods.orth import OrthMethod
from clora.workflows.run import run_stream


def test_budget_leaves_each_later_task_its_rank():
    assert reservation_budget(free=100, rank=8, tasks_after=3) == 76
    assert reservation_budget(free=20, rank=8, tasks_after=3) == 0  # never negative
    assert reservation_budget(free=20, rank=8, tasks_after=0) == 20  # the last planned task may take all
    assert reservation_budget(free=20, rank=8, tasks_after=-2) == 20  # past the plan: no reserve kept


def test_capacity_rows_accumulate_per_module():
    rows = capacity_rows(["a", "b"], [{"q": 3, "v": 1}, {"q": 2}], {"q": 10, "v": 6})
    assert [(r.task, r.reserved, r.free_after) for r in rows] == [
        ("a", {"q": 3, "v": 1}, {"q": 7, "v": 5}), ("b", {"q": 2, "v": 0}, {"q": 5, "v": 5})]
    assert rows[1].tightest == "q"  # ties broken by name
    lines = capacity_markdown(rows, {"q": 10, "v": 6})
    assert "Input directions per module: 6-10" in lines[0]
    assert "| a | 1-3 | 5-7 | v (5) |" in lines and "| b | 0-2 | 5 | q (5) |" in lines


def test_low_capacity_warning_says_what_is_left_and_what_to_do():
    assert low_capacity_warnings({"q": 16, "v": 40}, rank=8) == []
    one = low_capacity_warnings({"q": 9, "v": 40}, rank=8)[0]
    assert "1 module(s)" in one and "q: 9" in one and "next task fits at rank 8" in one
    assert "release its directions" in one
    assert "gets rank 3 there instead of 8" in low_capacity_warnings({"q": 3}, rank=8)[0]
    assert "cannot be added" in low_capacity_warnings({"q": 0}, rank=8)[0]


def _orth_on_hand_made_inputs(capacity_tasks):
    """A 6-input linear layer, rank 1, inputs that fill all 6 directions (energy 0.999 wants every one)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4))
    lora = LoRASet(inject_lora(model, ("0",), rank=1, scaling=1.0))
    method = OrthMethod(RunConfig(stream="x", method="orth", rank=1, settings={"energy": 0.999, "capacity_tasks": capacity_tasks}))
    inputs = torch.randn(200, 6) * torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    for j in range(3):
        method.begin_task(lora, j)
        with use_adapters(range(j + 1)):
            method.end_task(lora, j, run_inputs=lambda: model(inputs))
    return method


def test_planned_budget_keeps_room_for_every_task():
    method = _orth_on_hand_made_inputs(capacity_tasks=3)
    # task 0 may take 6 - 1*2 = 4 (3 energy directions + its adapter's 1), then one each
    assert [c["0"] for c in method.reserved_counts()] == [4, 1, 1]
    leading = method.contributions[0]["0"][:, :3]  # the capped reservation keeps the leading energy directions
    assert torch.linalg.matrix_norm(leading[3:]).item() < 0.2
    assert "cannot be added" in method.notes[-1]


def test_without_a_plan_the_first_task_takes_everything():
    with pytest.raises(ConfigError, match="no free directions left"):
        _orth_on_hand_made_inputs(capacity_tasks=None)


def test_run_reports_and_library_shows_the_capacity_table(synthetic_stream, tiny_model_dirs, tmp_path):
    out = tmp_path / "run"
    report = run_stream(RunConfig(stream=str(synthetic_stream), model=str(tiny_model_dirs["bert"]), method="orth",
                                  epochs=1, out=out, progress=False))
    assert report.settings["capacity_tasks"] == 3  # planned for the stream's length
    assert [row["task"] for row in report.capacity] == ["t0", "t1", "t2"]
    # the tiny model's 32 input directions: the plan leaves every task room for rank 8, none for a fourth
    assert [min(row["free_after"].values()) for row in report.capacity] == [16, 8, 0]
    assert min(report.subspace[m]["reserved"] for m in report.subspace) == 32
    assert "## Capacity of the reserved subspace" in report_markdown(report)
    assert Report.from_dict(report.to_dict()).capacity == report.capacity  # report.json round trip
    shown = CliRunner().invoke(cli, ["library", "show", str(out / "library")])
    assert shown.exit_code == 0, shown.output
    assert "reserved by each task:" in shown.output and "| t2 | 8 | 0 |" in shown.output


def test_add_task_one_at_a_time_gives_the_runs_capacity_table(synthetic_stream, tiny_model_dirs, tmp_path):
    """The same three tasks, as one run or as a one-task run (planned for 3) plus two add-tasks."""
    from conftest import write_jsonl

    from clora.data.loaders import load_tasks
    from clora.data.stream import load_stream
    from clora.library.ops import show

    model = str(tiny_model_dirs["bert"])
    whole = run_stream(RunConfig(stream=str(synthetic_stream), model=model, method="orth", epochs=1,
                                 out=tmp_path / "whole", progress=False))
    first = tmp_path / "first.yaml"
    first.write_text("\n".join(synthetic_stream.read_text().splitlines()[:6]) + "\n")  # the stream's first task
    run_stream(RunConfig(stream=str(first), model=model, method="orth", epochs=1, settings={"capacity_tasks": 3},
                         out=tmp_path / "grown", progress=False))
    library = tmp_path / "grown" / "library"
    for task in load_tasks(load_stream(synthetic_stream), None)[1:]:
        train = write_jsonl(tmp_path / f"{task.name}-train.jsonl", task.train)
        test = write_jsonl(tmp_path / f"{task.name}-test.jsonl", task.test)
        result = CliRunner().invoke(cli, ["add-task", str(library), "--name", task.name, "--train", str(train),
                                          "--test", str(test), "--labels", ",".join(task.labels),
                                          "--instruction", task.instruction, "--quiet"])
        assert result.exit_code == 0, result.output
    grown = [(r.task, r.reserved, r.free_after) for r in show(library).capacity_by_task]
    assert grown == [(r["task"], r["reserved"], r["free_after"]) for r in whole.capacity]
    assert "the next task cannot be added" in result.output  # the full library warns, naming what is left

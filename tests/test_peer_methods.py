"""The peers a practitioner would pick instead: ``replay`` (stored examples) and ``osf`` (PEFT's OSF)."""

import json

import geoopt
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from clora.config import RunConfig
from clora.data.loaders import load_tasks
from clora.data.stream import load_stream
from clora.data.task import Example, Task
from clora.errors import ConfigError
from clora.evaluation.evaluate import accuracy
from clora.families import FAMILIES
from clora.library.tensors import load_adapter
from clora.methods.osf import delta_factors, preserved_fraction
from clora.methods.replay import ReplayMethod, replay_sample
from clora.training.loop import epoch_batches
from clora.workflows.run import run_stream


def _task(name: str, n: int) -> Task:
    return Task(name=name, instruction="i", labels=["a", "b"],
                train=[Example(f"{name} {k}", "ab"[k % 2]) for k in range(n)], test=[Example("t", "a")])


def test_replay_sample_takes_the_fraction_rounded_up_without_repeats():
    examples = _task("x", 120).train
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    picked = replay_sample(examples, 0.02, gen())
    assert len(picked) == 3  # ceil(2.4)
    assert len(set(picked)) == 3 and set(picked) <= set(examples)
    assert picked == replay_sample(examples, 0.02, gen())  # seeded
    assert picked != replay_sample(examples, 0.02, torch.Generator().manual_seed(4))
    assert len(replay_sample(examples[:10], 0.02, gen())) == 1  # at least one per task
    assert replay_sample(examples[:10], 1.0, gen()) == examples[:10]
    capped = replay_sample(examples, 0.5, gen(), most=7)  # 60 by the fraction, 7 by the cap
    assert len(capped) == 7 and len(set(capped)) == 7 and set(capped) <= set(examples)
    assert len(replay_sample(examples, 0.02, gen(), most=7)) == 3  # a cap above the share changes nothing


def test_replay_max_caps_every_task_share_and_the_note_says_so():
    method = ReplayMethod(RunConfig(stream="x", method="replay", settings={"replay_fraction": 0.5, "replay_max": 4}))
    method.training_tasks([_task("t0", 50)], 0)
    method.end_task(_NoLoRA(), 0, run_inputs=lambda: None)
    method.training_tasks([_task("t1", 6)], 1)
    method.end_task(_NoLoRA(), 1, run_inputs=lambda: None)
    assert [len(t.train) for t in method.buffer] == [4, 3]  # 25 capped at 4; 3 under the cap
    assert "7 training examples" in method.notes[0] and "at most 4" in method.notes[0]
    with pytest.raises(ConfigError, match="replay_max must be a positive integer, got 0"):
        RunConfig(stream="x", method="replay", settings={"replay_max": 0})


def test_replay_trains_each_task_with_the_earlier_tasks_buffer():
    method = ReplayMethod(RunConfig(stream="x", method="replay", settings={"replay_fraction": 0.1}))
    t0, t1, t2 = _task("t0", 50), _task("t1", 30), _task("t2", 20)
    assert method.training_tasks([t0], 0) == [t0]  # nothing stored yet
    method.end_task(_NoLoRA(), 0, run_inputs=lambda: None)
    first = method.training_tasks([t1], 1)
    assert first[0] is t1 and len(first) == 2
    assert len(first[1].train) == 5 and set(first[1].train) <= set(t0.train)  # 10% of t0
    assert first[1].labels == t0.labels  # a buffer batch is scored against its own task's labels
    method.end_task(_NoLoRA(), 1, run_inputs=lambda: None)
    second = method.training_tasks([t2], 2)
    assert [len(t.train) for t in second] == [20, 5, 3]
    assert "stored data" in method.notes[0] and "8 training examples" in method.notes[0]


class _NoLoRA:
    def freeze(self, index):
        pass


def test_replay_run_trains_on_the_buffer_and_says_it_stores_data(synthetic_stream, tiny_model_dirs, tmp_path):
    report = run_stream(RunConfig(stream=str(synthetic_stream), model=str(tiny_model_dirs["bert"]), method="replay",
                                  epochs=1, batch_size=16, settings={"replay_fraction": 0.25}, out=tmp_path / "r", progress=False))
    # 48 training examples per task: 3 batches; the buffer keeps 12 per earlier task, one batch each
    assert [t["steps"] for t in report.training] == [3, 4, 5]
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["settings"]["replay_fraction"] == 0.25
    assert any("uses stored data" in note for note in saved["notes"])
    assert "routed" in saved["modes"]  # a new adapter per task, as inc: snapshots survive and are routed


def test_osf_preserves_a_rising_fraction_and_factors_its_delta_exactly():
    assert [preserved_fraction(0.3, 0.7, j, 3) for j in range(3)] == pytest.approx([0.3, 0.5, 0.7])
    assert preserved_fraction(0.3, 0.7, 0, 1) == 0.3
    delta = torch.randn(6, 3) @ torch.randn(3, 5)  # rank 3
    a, b = delta_factors(delta, scaling=2.0)
    assert a.shape == (3, 5) and b.shape == (6, 3)
    assert torch.allclose(2.0 * b @ a, delta, atol=1e-5)


def _osf_by_hand(folder, stream_path, config: RunConfig):
    """Drive peft's OSF directly: get_peft_model per task, Adam on its parameters, merge_and_unload after.

    geoopt's Adam puts eps where torch's does not; on a tiny random model the gradients are
    small enough for that to matter, so the hand-driven loop uses the optimiser clora uses.
    """
    from peft import OSFConfig, get_peft_model

    model = AutoModel.from_pretrained(folder).eval()
    tasks = load_tasks(load_stream(stream_path), None, seed=config.seed)
    # one family over the model object PEFT edits in place; its label anchors are the untrained model's
    family = FAMILIES["encoder"](model, AutoTokenizer.from_pretrained(folder), config)
    [family.label_anchors(t) for t in tasks]
    rows = []
    for j, task in enumerate(tasks):
        fraction = preserved_fraction(*config.settings.osf_preserve, j, len(tasks))
        peft_model = get_peft_model(model, OSFConfig(target_modules=["query", "value"], effective_rank=fraction))
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = geoopt.optim.RiemannianAdam(params, lr=config.lr)  # clora's optimiser (plain Adam on these)
        generator = torch.Generator().manual_seed(config.seed * 7919 + j)
        for _ in range(config.epochs):
            for t, batch in epoch_batches([task], config.batch_size, generator):
                optimizer.zero_grad()
                family.loss(t, batch).backward()
                optimizer.step()
        assert peft_model.merge_and_unload() is model
        rows.append([accuracy(family, t, config) for t in tasks[:j + 2]])
    return model, rows


def test_osf_run_equals_driving_peft_osf_by_hand(synthetic_stream, tiny_model_dirs, tmp_path):
    folder = tiny_model_dirs["bert"]
    config = RunConfig(stream=str(synthetic_stream), model=str(folder), method="osf", epochs=2, lr=1e-2,
                       out=tmp_path / "osf", progress=False)
    report = run_stream(config)
    model, rows = _osf_by_hand(folder, synthetic_stream, config)
    matrix = report.modes["sum"].accuracy_matrix
    for j, row in enumerate(rows):
        assert matrix[j][:len(row)] == pytest.approx(row)
    assert report.modes["oracle"].accuracy_matrix == matrix  # one set of weights: oracle is sum
    # the library's one adapter is the total change of each weight: base + scaling * B A = PEFT's merged weights
    manifest = json.loads((tmp_path / "osf" / "library" / "manifest.json").read_text())
    factors = load_adapter(tmp_path / "osf" / "library", manifest["tasks"][-1]["adapter"], manifest["modules"])
    start = AutoModel.from_pretrained(folder)
    moved = 0.0
    for name, (a, b) in factors.items():
        w0 = start.get_submodule(name).weight.detach()
        expected = model.get_submodule(name).weight.detach()
        assert torch.allclose(w0 + manifest["scaling"] * b @ a, expected, atol=1e-5)
        moved = max(moved, (expected - w0).abs().max().item())
    assert moved > 1e-3  # OSF really changed the weights


def test_add_task_refuses_an_osf_library(synthetic_stream, tiny_model_dirs, tmp_path, new_task_files):
    from click.testing import CliRunner

    from clora.cli.main import cli

    run_stream(RunConfig(stream=str(synthetic_stream), model=str(tiny_model_dirs["bert"]), method="osf", epochs=1,
                         out=tmp_path / "osf", progress=False))
    train, test = new_task_files
    result = CliRunner().invoke(cli, ["add-task", str(tmp_path / "osf" / "library"), "--name", "new",
                                      "--train", str(train), "--test", str(test), "--quiet"])
    assert result.exit_code != 0 and "keeps one adapter for every task" in result.output


def test_compare_table_marks_methods_that_store_data():
    from clora.workflows.compare import comparison_markdown

    row = {"lr": 3e-3, "overlap": None, "train_s": 1.0, "modes": {"sum": {"average_accuracy": 0.5, "bwt": 0.0,
                                                                          "forgetting": 0.0, "fwt": 0.0}}}
    table = {"stream": "s", "model": "m", "tasks": ["a"],
             "methods": {"inc": {**row, "notes": []}, "replay": {**row, "notes": ["replay uses stored data: 3"]}}}
    text = comparison_markdown(table)
    assert "| replay * |" in text and "| inc |" in text and "replay: uses stored data" in text


@pytest.mark.parametrize("options, message", [
    (["--method", "replay", "--replay-fraction", "0"], "replay_fraction must be positive"),
    (["--method", "replay", "--replay-fraction", "1.5"], "replay_fraction must be in (0, 1]"),
    (["--method", "replay", "--replay-max", "0"], "replay_max must be a positive integer"),
    (["--method", "osf", "--osf-preserve", "0.3", "1"], "osf_preserve fractions must be in (0, 1)"),
    (["--capacity-tasks", "0"], "capacity_tasks must be a positive integer"),
    # a knob of another method is refused, not silently ignored
    (["--replay-fraction", "0.1"], "replay_fraction is not a setting of method orth (a setting of replay)"),
    (["--method", "inc", "--lambda1", "0.1"], "lambda1 is not a setting of method inc (a setting of olora)"),
])
def test_bad_peer_settings_are_one_line_errors(synthetic_stream, tmp_path, options, message):
    from click.testing import CliRunner
    from conftest import assert_one_line_error

    from clora.cli.main import cli

    result = CliRunner().invoke(cli, ["run", str(synthetic_stream), "--out", str(tmp_path / "x"), *options])
    assert_one_line_error(result, message)
    assert not (tmp_path / "x").exists()


def test_cli_runs_osf_and_prints_its_schedule(synthetic_stream, tiny_model_dirs, tmp_path):
    from click.testing import CliRunner

    from clora.cli.main import cli

    result = CliRunner().invoke(cli, ["run", str(synthetic_stream), "--model", str(tiny_model_dirs["bert"]),
                                      "--method", "osf", "--osf-preserve", "0.2", "0.6", "--epochs", "1",
                                      "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "osf preserved 20% to 60%" in result.output and "routed" not in result.output
    saved = json.loads((tmp_path / "o" / "report.json").read_text())
    assert saved["settings"]["osf_preserve"] == [0.2, 0.6] and saved["settings"]["lr"] == 1e-4


def test_osf_without_peft_is_one_line_before_anything_loads(synthetic_stream, tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner
    from conftest import assert_one_line_error

    from clora.cli.main import cli

    monkeypatch.setitem(sys.modules, "peft", None)  # as in a plain `pip install clora`: import peft fails
    result = CliRunner().invoke(cli, ["run", str(synthetic_stream), "--method", "osf", "--model", "no-such-model",
                                      "--out", str(tmp_path / "x")])
    assert_one_line_error(result, "needs peft 0.18 or later: pip install 'clora[osf]'")
    assert not (tmp_path / "x").exists()

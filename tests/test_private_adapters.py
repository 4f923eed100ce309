"""orth's private adapters (``private_rank``): a free LoRA per task that acts only where that task's snapshot
answers, never in sum mode, never on another task's inputs; stored, exported and added with the task."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from conftest import model_outputs

from clora.adapters import use_adapters
from clora.cli.main import cli
from clora.config import RunConfig
from clora.data.task import Example, Task
from clora.errors import ConfigError
from clora.evaluation.evaluate import accuracy
from clora.families.loading import load_base_model
from clora.library.layout import read_manifest
from clora.methods.orth_settings import OrthSettings
from clora.routing.router import SUMMED
from clora.workflows.library_model import open_library_model
from clora.workflows.run import run_stream


@pytest.fixture(scope="module")
def runs(tiny_model_dirs, tmp_path_factory):
    """``{private_rank: report}`` of one three-task stream on the tiny bert, with and without private adapters."""
    root = tmp_path_factory.mktemp("private")
    stream = root / "s.yaml"
    stream.write_text("tasks:\n" + "".join(
        f"  - {{name: t{i}, format: synthetic, instruction: Which colour, "
        f"options: {{domain: {d}, shift: {i}, n_train: 48, n_test: 24}}}}\n"
        for i, d in enumerate(["cooking", "sailing", "finance"])))
    reports = {}
    for private in (0, 2):
        settings = {"private_rank": private} if private else {}
        reports[private] = run_stream(RunConfig(stream=str(stream), out=root / f"run-{private}",
                                                model=str(tiny_model_dirs["bert"]), method="orth", rank=2, epochs=2,
                                                lr=1e-2, settings=settings, progress=False))
    return reports


def _matrix(report, mode):
    return report.modes[mode].accuracy_matrix


def test_private_adapters_leave_sum_mode_and_the_overlap_exactly_as_they_were(runs):
    assert _matrix(runs[2], "sum") == _matrix(runs[0], "sum")
    assert runs[2].overlap == runs[0].overlap and runs[2].overlap <= 1e-5
    assert runs[2].settings["private_rank"] == 2 and runs[2].settings["private_share"] == 0.25
    assert "private_rank" not in runs[0].settings  # a report without them is the one orth wrote before
    for row in runs[2].training:
        assert row["private_steps"] == round(0.25 * row["steps"])
    assert "private_steps" not in runs[0].training[0]
    assert 0 < runs[2].timing["private_s"] < runs[2].timing["train_s"] and "private_s" not in runs[0].timing


def test_the_oracle_diagonal_is_each_task_in_its_snapshot_with_its_private_adapter(runs):
    lm = open_library_model(runs[2].out / "library", progress=False)
    assert lm.all_adapters() == [0, 1, 2] and lm.private_of == {"t0": 3, "t1": 4, "t2": 5}
    assert lm.snapshot("t1") == [0, 1, 4] and lm.snapshots()[SUMMED] == [0, 1, 2]
    oracle = _matrix(runs[2], "oracle")
    for i, entry in enumerate(lm.manifest.tasks):
        with use_adapters(lm.snapshot(entry.name)):
            assert accuracy(lm.family, entry_task(lm, entry.name), lm.config) == pytest.approx(oracle[i][i])
    assert oracle != _matrix(runs[0], "oracle")  # the private adapters changed what the snapshots answer


def entry_task(lm, name):
    import clora.data.loaders as loaders

    return loaders.load_referenced_task(dict(lm.manifest.task(name).data))


def test_a_mixed_batch_gives_each_input_its_own_tasks_private_adapter_only(runs):
    lm = open_library_model(runs[2].out / "library", progress=False)
    tasks = {t.name: Task(name=t.name, instruction=t.instruction, labels=list(t.labels),
                          train=[Example("x", t.labels[0])], test=[Example("x", t.labels[0])])
             for t in lm.manifest.tasks}
    texts, names = ["apple oven recipe", "river boat mast", "stone flour", "cloud anchor tide"], ["t0", "t1", "t2", "t0"]
    masks = torch.zeros(len(texts), len(lm.lora))
    for b, name in enumerate(names):
        masks[b, lm.snapshot(name)] = 1.0
    mixed = lm.family.mixed_option_scores([tasks[n] for n in names], texts, masks)
    for b, name in enumerate(names):
        with use_adapters(lm.snapshot(name)):
            alone = lm.family.option_scores(tasks[name], [texts[b]])[0]
        with use_adapters([i for i in lm.snapshot(name) if i not in lm.private_of.values()]):
            without = lm.family.option_scores(tasks[name], [texts[b]])[0]
        assert torch.allclose(mixed[b], alone, atol=1e-5)
        assert (alone - without).abs().max() > 1e-5  # its private adapter acts on it


def test_an_exported_snapshot_holds_the_private_adapter_and_equals_the_library(runs, tiny_model_dirs, tmp_path):
    from peft import PeftModel

    lib = runs[2].out / "library"
    result = CliRunner().invoke(cli, ["library", "export", str(lib), "--task", "t1", "--format", "peft",
                                      str(tmp_path / "peft")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["r"] == 2 + 2 + 2  # t0's and t1's adapters, and t1's private one
    lm = open_library_model(lib, progress=False)
    with use_adapters(lm.snapshot("t1")):
        ours = model_outputs(lm.base_model.model, lm.base_model.tokenizer, "bert")
    base = load_base_model(str(tiny_model_dirs["bert"]))
    theirs = model_outputs(PeftModel.from_pretrained(base.model, str(tmp_path / "peft")).eval(), base.tokenizer, "bert")
    assert (ours - theirs).abs().max() <= 1e-5


def test_add_task_trains_and_stores_a_private_adapter_that_verify_accepts(runs, new_task_files, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(runs[2].out / "library", lib)
    train, test = new_task_files
    result = CliRunner().invoke(cli, ["add-task", str(lib), "--name", "new", "--train", str(train), "--test",
                                      str(test), "--quiet"])
    assert result.exit_code == 0, result.output
    entry = next(t for t in read_manifest(lib)["tasks"] if t["name"] == "new")
    assert entry["private"].endswith("private.safetensors") and (lib / entry["private"]).is_file()
    lm = open_library_model(lib, progress=False)
    assert lm.snapshot("new") == [0, 1, 2, 3, lm.private_of["new"]] and len(lm.lora) == 8
    assert lm.all_adapters() == [0, 1, 2, 3]
    verify = CliRunner().invoke(cli, ["library", "verify", str(lib)])
    assert verify.exit_code == 0, verify.output
    shown = CliRunner().invoke(cli, ["library", "show", str(lib)])
    assert "private adapters (rank 2, each acts only where its own task answers): t0, t1, t2, new" in shown.output


def test_private_settings_are_checked_with_one_clear_line():
    for bad, message in [({"private_rank": -1}, "private_rank must be non-negative"),
                         ({"private_rank": 1.5}, "private_rank must be a whole number"),
                         ({"private_share": 0}, "private_share must be positive"),
                         ({"private_share": 1.5}, r"private_share must be in \(0, 1\]"),
                         ({"private_lr": 0.0}, "private_lr must be positive")]:
        with pytest.raises(ConfigError, match=message):
            OrthSettings(**bad)
    assert OrthSettings(private_rank=4, private_lr=1e-2).recorded(3e-3)["private_lr"] == 1e-2

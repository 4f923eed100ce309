"""A mixed-task batch in one forward pass equals running each input alone in its snapshot."""

import pytest
import torch

from clora.adapters import no_adapters, use_adapters
from clora.adapters.selection import NO_ADAPTERS, current_selection
from clora.data.task import Example, Task
from clora.workflows.library_model import open_library_model

TEXTS = ["apple oven the recipe", "river boat very mast quick", "stone flour again", "cloud anchor tide",
         "lamp spoon kitchen", "horse deck crew there"]


def _tasks(lm):
    return {t.name: Task(name=t.name, instruction=t.instruction, labels=list(t.labels),
                         train=[Example("x", t.labels[0])], test=[Example("x", t.labels[0])])
            for t in lm.manifest.tasks}


@pytest.mark.parametrize("kind,method", [("bert", "orth"), ("llama", "orth"), ("bert", "olie"), ("gpt2", "inc")])
def test_mixed_batch_equals_each_input_alone(kind, method, library_factory):
    lm = open_library_model(library_factory(kind, method), progress=False)
    tasks = _tasks(lm)
    names = ["t0", "t1", "t1", "t0", "t1", "t0"]
    snapshots = [lm.snapshot(n) for n in names]
    snapshots[3] = []  # one input runs in the bare base model
    masks = torch.zeros(len(TEXTS), len(lm.lora))
    for b, snap in enumerate(snapshots):
        masks[b, snap] = 1.0
    mixed = lm.family.mixed_option_scores([tasks[n] for n in names], TEXTS, masks)
    for b, (name, snap) in enumerate(zip(names, snapshots)):
        with use_adapters(snap):
            alone = lm.family.option_scores(tasks[name], [TEXTS[b]])[0]
        assert torch.allclose(mixed[b], alone, atol=1e-5), (b, (mixed[b] - alone).abs().max())
    # and the snapshots really differ, so the test can tell a wrong routing apart
    with no_adapters():
        bare = lm.family.option_scores(tasks["t1"], [TEXTS[1]])[0]
    assert (bare - mixed[1]).abs().max() > 1e-4


def test_predict_with_one_task_per_text_equals_asking_per_task(library_factory):
    from clora.errors import ConfigError
    from clora.serving.inference import load_library

    lib = load_library(library_factory("bert", "orth"))
    names = ["t0", "t1", "t1", "t0", "t1", "t0"]
    mixed = lib.predict(TEXTS, mode="oracle", task=names)
    for text, name, row in zip(TEXTS, names, mixed):
        assert row["task"] == name and row["source"] == "given"
        assert row["prediction"] == lib.predict([text], mode="oracle", task=name)[0]["prediction"]
    with pytest.raises(ConfigError, match="2 task names for 6 texts"):
        lib.predict(TEXTS, mode="oracle", task=["t0", "t1"])


@pytest.mark.parametrize("method", ["orth", "olie"])
def test_a_batch_with_one_adapter_set_runs_as_that_snapshot(method, library_factory):
    lm = open_library_model(library_factory("bert", method), progress=False)
    tasks = _tasks(lm)
    masks = torch.ones(len(TEXTS), len(lm.lora))  # sum mode: every input, every adapter
    mixed = lm.family.mixed_option_scores([tasks["t1"]] * len(TEXTS), TEXTS, masks)
    with use_adapters([0, 1]):
        alone = lm.family.option_scores(tasks["t1"], TEXTS)
    assert torch.allclose(torch.stack(mixed), alone, atol=1e-5)
    assert current_selection() is NO_ADAPTERS  # the call's selection ended with the call


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_answer_probabilities_in_a_mixed_batch_equal_each_input_alone(kind, library_factory):
    import json

    from click.testing import CliRunner

    from clora.cli.main import cli
    from clora.serving.inference import load_library

    lib = library_factory(kind, "orth")
    loaded = load_library(lib)
    names = ["t0", "t1", "t1", "t0", "t1", "t0"]
    mixed = loaded.predict(TEXTS, mode="oracle", task=names)
    for text, name, answer in zip(TEXTS, names, mixed):
        alone = loaded.predict([text], mode="oracle", task=name)[0]
        assert answer.prediction == alone.prediction
        assert answer.answer_probability == pytest.approx(alone.answer_probability, abs=1e-5)
        assert 1 / 4 <= answer.answer_probability <= 1.0  # the most likely of four labels
    printed = CliRunner().invoke(cli, ["predict", str(lib), TEXTS[0], "--task", "t0"]).output.splitlines()
    row = json.loads(printed[0])
    assert row["answer_probability"] == mixed[0].answer_probability and row["router_confidence"] == 1.0

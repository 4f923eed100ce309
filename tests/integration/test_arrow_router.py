"""PEFT's Arrow routing over a library's task adapters (``--router arrow``), through peft itself."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli
from clora.serving.inference import load_library

pytest.importorskip("peft.tuners.lora.arrow")


def test_arrow_weights_are_peft_coefficients_and_answers_come_from_the_arrow_model(library_factory):
    lib = library_factory("bert", "orth")
    arrow = load_library(lib, router="arrow")
    texts = ["apple kitchen today", "boat harbor near the river"]
    weights = arrow.weights(texts)
    assert weights.shape == (2, 2)
    assert torch.allclose(weights.sum(1), torch.ones(2, dtype=weights.dtype))  # a softmax, averaged
    routes = arrow.route(texts)
    assert [r.task for r in routes] == [arrow.names[int(i)] for i in weights.argmax(1)]
    predictions = arrow.predict(texts)
    assert all(p.source == "arrow" and p.prediction in arrow.tasks[p.task].labels for p in predictions)
    # the answers come from the Arrow-mixed model: with peft's adapters off they may differ, and they equal
    # the family's own prediction under the same (Arrow) model
    task = arrow.tasks[routes[0].task]
    assert predictions[0].prediction == arrow.family.predict(task, [texts[0]])[0]


def test_arrow_from_the_command_line_and_its_limits(library_factory):
    lib = library_factory("bert", "orth")
    result = CliRunner().invoke(cli, ["predict", str(lib), "--router", "arrow", "apple kitchen today"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.splitlines()[0])
    assert row["source"] == "arrow" and row["task"] in ("t0", "t1")
    assert "1 of 1 routed" in result.output
    assert_one_line_error(CliRunner().invoke(cli, ["predict", str(lib), "--router", "arrow", "--task", "t0", "x"]),
                          "the arrow router only routes")
    assert_one_line_error(CliRunner().invoke(cli, ["predict", str(library_factory("bert", "olie")), "--router",
                                                   "arrow", "x"]), "multiplicative")


def test_concurrent_arrow_calls_never_mix_their_layers(library_factory):
    """Each thread's weights equal the same call made alone (the hooks write into the caller's own collector)."""
    from concurrent.futures import ThreadPoolExecutor

    arrow = load_library(library_factory("bert", "orth"), router="arrow")
    batches = [["apple kitchen today"] * 3, ["boat harbor near the river", "a"], ["x y z"] * 5] * 4
    alone = [arrow.weights(texts) for texts in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(arrow.weights, batches))
    assert all(torch.equal(a, b) for a, b in zip(alone, together))
    arrow.predict(["apple kitchen today"])  # answering opens no collector: nothing recorded, nothing left open
    assert arrow.weights(["x y z"]).shape == (1, 2)

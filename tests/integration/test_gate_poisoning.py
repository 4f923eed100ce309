"""The promotion gate cannot be poisoned through the serving API (issue 38, finding 1).

The attack that worked before: 300 ``POST /feedback`` naming an existing task (``cooking``) with another
label mapping became cooking's evaluation data, so the gate passed a candidate trained on cooking's inputs
under the attacker's labels: cooking's true accuracy fell from 100 to 47.5 by hand and to 62.0 by
``--auto-promote``. Now evaluation data needs the admin key, and each data source is its own gate row: the
same attack is refused both times and the library (so every task's true accuracy) is unchanged.
"""

import time

from click.testing import CliRunner
from conftest import library_state, post_json
from test_serving_limits import running

from clora.cli.main import cli
from clora.data.loaders import load_referenced_task
from clora.inbox.auto import AutoPromoter
from clora.inbox.hooks import server_hooks
from clora.inbox.records import Inbox
from clora.library.layout import read_manifest
from clora.serving.app import ServeSettings
from clora.serving.inference import load_library


def _true_accuracy(lib, examples) -> float:
    answers = load_library(lib, device="cpu").predict([e.text for e in examples])
    return 100.0 * sum(a.prediction == e.target for a, e in zip(answers, examples)) / len(examples)


def test_poisoned_feedback_is_refused_and_the_stolen_task_is_not_promoted(minilm_demo, tmp_path):
    import shutil

    lib = shutil.copytree(minilm_demo, tmp_path / "lib")
    cooking = next(t for t in read_manifest(lib)["tasks"] if t["name"] == "cooking")
    labels = cooking["labels"]
    swap = {a: labels[(i + 1) % len(labels)] for i, a in enumerate(labels)}  # the attacker's mapping
    tasks = {t["name"]: load_referenced_task(t["data"]) for t in read_manifest(lib)["tasks"]}
    train = tasks["cooking"].train  # the attacker sends cooking's own inputs under another labelling
    before = {name: _true_accuracy(lib, task.test) for name, task in tasks.items()}
    assert before["cooking"] >= 90
    state = library_state(lib)
    promoter = AutoPromoter(lib, min_examples=40, every_s=0.5, device="cpu")
    settings = ServeSettings(**server_hooks(Inbox(lib), record_unrouted=True, promoter=promoter), loop_nice=0)
    with running(load_library(lib, device="cpu"), settings) as port:
        poisoned = [post_json(port, "/feedback", {"input": e.text, "label": swap[e.target], "task": "cooking"})
                    for e in (train * 4)[:300]]
        assert {status for status, _ in poisoned} == {403}  # no admin key: nothing becomes evaluation data
        assert Inbox(lib).evaluation("cooking") == []
        for e in train[:60]:  # what anyone may send: labelled examples for a new task, here cooking's inputs
            assert post_json(port, "/feedback", {"input": e.text, "label": swap[e.target]})[0] == 200
        deadline = time.time() + 600
        while promoter.last is None and time.time() < deadline:
            time.sleep(0.5)
    promoter.stop()
    assert promoter.last is not None and not promoter.last["committed"], promoter.last
    assert "cooking would drop" in promoter.last["message"] and "test data" in promoter.last["message"]
    assert CliRunner().invoke(cli, ["inbox", str(lib), "cluster"]).exit_code == 0
    by_hand = CliRunner().invoke(cli, ["inbox", str(lib), "promote", "--cluster", "0", "--name", "stolen", "--quiet"])
    assert by_hand.exit_code != 0 and "not promoted: cooking would drop" in by_hand.output, by_hand.output
    assert library_state(lib) == state and read_manifest(lib)["version"] == 1
    after = {name: _true_accuracy(lib, task.test) for name, task in tasks.items()}
    print(f"true accuracy per task before {before}, after {after}; auto-promote: {promoter.last['message']}")
    assert after == before

"""A new user's first hour: a schedule that fits small tasks, answers with their own probability, data
errors that show what was found, hints for a run folder, keywords that are refused rather than ignored."""

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from clora.config import DEFAULT_EPOCHS, MIN_STEPS, RunConfig
from clora.data.loaders import load_task
from clora.data.stream import Stream, TaskSpec
from clora.data.task import Example, Task
from clora.errors import ConfigError, DataError
from clora.families.base import Answer, option_answer
from clora.library.layout import LibraryError, read_manifest
from clora.serving.prediction import Prediction, probability_of


def _stream(tmp_path: Path, spec: TaskSpec) -> Stream:
    return Stream(name="s", tasks=[spec], source=tmp_path / "s.yaml")


# --- the schedule -------------------------------------------------------------------------------------------

def test_default_epochs_rise_to_the_step_floor_and_given_epochs_are_exact():
    default = RunConfig(stream="demo")
    assert (default.epochs, default.min_steps) == (DEFAULT_EPOCHS, MIN_STEPS) == (3, 45)
    assert default.epochs_for(3) == 15      # 48 examples at batch 16: 15 epochs, 45 steps
    assert default.epochs_for(4) == 12      # ceil(45 / 4)
    assert default.epochs_for(63) == 3      # 1000 examples: the benchmarks' 3 epochs, unchanged
    assert default.epochs_for(16) == 3      # 250 examples (cb at 500 train): 48 steps already
    given = RunConfig(stream="demo", epochs=2)
    assert given.min_steps == 0 and given.epochs_for(3) == 2
    both = RunConfig(stream="demo", epochs=2, min_steps=10)
    assert both.epochs_for(3) == 4


@pytest.mark.parametrize("bad", [-1, 1.5, True, "45"])
def test_a_bad_step_floor_names_itself(bad):
    with pytest.raises(ConfigError, match="min_steps must be a non-negative integer") as info:
        RunConfig(stream="demo", min_steps=bad)
    assert info.value.field == "min_steps"


def test_a_library_from_before_the_floor_gets_it_unless_epochs_are_given():
    from clora.library.manifest import Manifest
    from clora.workflows.library_model import library_config

    manifest = Manifest(version=1, base_model="m", base_fingerprint="", family="encoder", target_modules=("query",),
                        method="orth", settings={"rank": 2, "epochs": 3, "seed": 0}, scaling=None, modules={},
                        router=None, tasks=())
    assert library_config(manifest).min_steps == MIN_STEPS
    assert library_config(manifest, epochs=2).min_steps == 0
    assert library_config(manifest, epochs=2, min_steps=7).min_steps == 7


def test_training_says_so_when_a_task_takes_very_few_steps(tiny_model_dirs, caplog):
    from clora.adapters import LoRASet, inject_lora, use_adapters
    from clora.families import FAMILIES
    from clora.families.loading import load_base_model
    from clora.methods import make_method
    from clora.training.loop import train_task

    examples = [Example(f"word {i}", "a" if i % 2 else "b") for i in range(20)]
    task = Task(name="tiny", instruction="", labels=["a", "b"], train=examples, test=examples[:4])
    for epochs, warned in ((1, True), (None, False)):
        config = RunConfig(stream="s", rank=2, epochs=epochs, progress=False)
        base = load_base_model(str(tiny_model_dirs["bert"]), device="cpu")
        lora = LoRASet(inject_lora(base.model, base.default_targets, 2, config.scaling))
        method = make_method(config)
        params = method.begin_task(lora, 0)
        caplog.clear()
        clora_log = logging.getLogger("clora")  # the CLI's tests leave it not propagating: listen on it directly
        clora_log.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.WARNING, logger="clora"), use_adapters([0]):
                stats = train_task(FAMILIES["encoder"](base.model, base.tokenizer, config), task, params, config)
        finally:
            clora_log.removeHandler(caplog.handler)
        assert stats.epochs == (1 if epochs else 23) and stats.steps == stats.epochs * 2
        assert ("trains for only 2 optimiser steps" in caplog.text) is warned


# --- data errors ----------------------------------------------------------------------------------------------

def test_a_missing_field_lists_the_fields_found(tmp_path):
    path = tmp_path / "med.jsonl"
    path.write_text("".join(json.dumps({"complaint": f"pain {i}", "clinic": "x"}) + "\n" for i in range(6)))
    spec = TaskSpec(name="med", format="jsonl", path=str(path))
    with pytest.raises(DataError) as info:
        load_task(spec, _stream(tmp_path, spec))
    message = str(info.value)
    assert "has no field 'sentence'" in message and "its fields: 'complaint', 'clinic'" in message
    assert "text_field" in message and info.value.field == "text_field"


def test_a_broken_jsonl_line_is_named_with_its_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"sentence": f"s {i}", "label": "x"}) for i in range(5)]
    rows[3] = '{"sentence": "s 3", "label"'
    path.write_text("\n".join(rows) + "\n")
    spec = TaskSpec(name="t", format="jsonl", path=str(path))
    with pytest.raises(DataError, match=r"rows.jsonl' line 4 is not valid JSON \(Expecting ':' delimiter"):
        load_task(spec, _stream(tmp_path, spec))


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path):
    from clora.data.files import broken_json_line

    path = tmp_path / "rows.jsonl"
    path.write_text('{"sentence": "a", "label": "x"}\n\n[1, 2]\n')
    assert broken_json_line({"train": str(path)}) == f"{str(path)!r} line 3 is not a JSON object ('[1, 2]')"
    path.write_text('{"sentence": "a", "label": "x"}\n')
    assert broken_json_line({"train": str(path)}) is None


def test_a_semicolon_csv_is_read_with_its_own_delimiter(tmp_path):
    path = tmp_path / "dishes.csv"
    rows = [("cake, warm", "dessert"), ("soup of leeks", "soup")] * 6
    path.write_text("dish;course\n" + "".join(f"{d};{c}\n" for d, c in rows))
    spec = TaskSpec(name="d", format="csv", path=str(path), text_field="dish", label_field="course", test_size=0.25)
    task = load_task(spec, _stream(tmp_path, spec))
    assert sorted(task.labels) == ["dessert", "soup"] and len(task.train) + len(task.test) == 12
    assert {ex.text for ex in task.train + task.test} == {"cake, warm", "soup of leeks"}


@pytest.mark.parametrize("header,delimiter", [("a,b", ","), ("a;b", ";"), ("a\tb", "\t"), ("a|b", "|"), ("ab", ",")])
def test_csv_delimiter_is_sniffed_from_the_header(tmp_path, header, delimiter):
    from clora.data.files import csv_delimiter

    path = tmp_path / "f.csv"
    path.write_text(header + "\n1,2;3\n")
    assert csv_delimiter(path) == delimiter


# --- run folders --------------------------------------------------------------------------------------------

def test_a_run_folder_given_as_a_library_says_where_the_library_is(tmp_path):
    (tmp_path / "run" / "library").mkdir(parents=True)
    (tmp_path / "run" / "library" / "manifest.json").write_text("{}")
    with pytest.raises(LibraryError, match=r"is a run folder, not a library; its library is '.*run/library'"):
        read_manifest(tmp_path / "run")
    (tmp_path / "plain").mkdir()
    with pytest.raises(LibraryError, match="is not a clora library"):
        read_manifest(tmp_path / "plain")


# --- answer probability ------------------------------------------------------------------------------------

def test_an_answer_carries_the_softmax_of_its_option_scores():
    task = Task(name="t", instruction="", labels=["red", "green", "blue"], train=[Example("x", "red")],
                test=[Example("x", "red")])
    answer = option_answer(task, torch.tensor([1.0, 2.0, 0.0]))
    # e^2 / (e^1 + e^2 + e^0) = 7.389 / 11.107
    assert answer.text == "green" and answer.probability == pytest.approx(0.665241, abs=1e-6)
    assert option_answer(task, torch.tensor([0.0, 0.0, 0.0])).probability == pytest.approx(1 / 3)


def test_a_prediction_names_whose_confidence_is_whose():
    p = Prediction("in", "t", 0.25, "red", "learned", answer_probability=0.9)
    row = p.to_dict()
    assert row["router_confidence"] == row["confidence"] == 0.25 and row["answer_probability"] == 0.9
    assert list(row) == ["input", "task", "prediction", "answer_probability", "router_confidence", "source",
                         "confidence"]
    assert p.router_confidence == 0.25
    assert probability_of(Answer("x", float("nan"))) is None and probability_of(Answer("x", 0.1234567)) == 0.123457


# --- keywords ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("router,keyword,value", [("arrow", "threshold", 0.5), ("arrow", "precision", "bf16"),
                                                  ("lda", "top_k", 2), ("lda", "temperature", 0.5)])
def test_a_keyword_the_router_does_not_use_is_refused(router, keyword, value, tmp_path):
    from clora.serving.inference import load_library

    with pytest.raises(ConfigError, match=f"{keyword} does not apply to the {router} router") as info:
        load_library(tmp_path, router=router, **{keyword: value})
    assert info.value.field == keyword


def test_a_misspelt_keyword_is_refused(tmp_path):
    from clora.serving.inference import load_library

    with pytest.raises(TypeError, match="threshhold"):
        load_library(tmp_path, threshhold=0.5)


def test_generation_answers_score_themselves_only_when_asked(tiny_model_dirs):
    from clora.families import FAMILIES
    from clora.families.loading import load_base_model

    base = load_base_model(str(tiny_model_dirs["llama"]), device="cpu")
    family = FAMILIES[base.kind](base.model, base.tokenizer, RunConfig(stream="s", max_length=32))
    task = Task(name="g", instruction="Say it", labels=[], train=[Example("a", "b")], test=[Example("a", "b")],
                kind="generation", metric="exact_match", max_new_tokens=4)
    answers = family.answer(task, ["one two", "three"])
    assert [a.text for a in answers] == family.predict(task, ["one two", "three"])
    prompts = [task.format_prompt(t) for t in ["one two", "three"]]
    expected = torch.exp(family.answer_logprob(prompts, [a.text for a in answers]))
    assert [a.probability for a in answers] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(0.0 < a.probability <= 1.0 for a in answers)
    assert all(math.isnan(a.probability) for a in family.answer(task, ["one two"], probability=False))

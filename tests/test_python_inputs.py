"""Data and models given as Python objects: accepted, or refused up front in one line."""

import datasets
import pytest

from clora.data.loaders import load_task
from clora.data.stream import Stream, TaskSpec
from clora.errors import DataError, ModelError
from clora.families.loading import load_base_model
from clora.testing import make_model, make_tokenizer

ROWS = [{"sentence": f"text {i}", "label": ["pos", "neg"][i % 2]} for i in range(10)]


def _load(spec, **kw):
    return load_task(spec, Stream("s", [spec]), None, **kw)


def test_a_dataset_dict_gives_its_train_and_test_splits():
    data = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:8]),
                                 "test": datasets.Dataset.from_list(ROWS[8:])})
    task = _load(TaskSpec("t", data=data))
    assert [e.text for e in task.test] == ["text 8", "text 9"] and len(task.train) == 8
    assert task.labels == ["neg", "pos"]


def test_a_dataset_is_split_by_test_size_and_a_list_of_rows_is_a_dataset():
    by_dataset = _load(TaskSpec("t", data=datasets.Dataset.from_list(ROWS), test_size=0.3), seed=1)
    by_rows = _load(TaskSpec("t", data=list(ROWS), test_size=0.3), seed=1)
    assert (len(by_dataset.train), len(by_dataset.test)) == (7, 3)
    assert by_dataset.test == by_rows.test  # the same split for the same seed


def test_class_label_integers_become_their_names():
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    data = datasets.Dataset.from_list([{"sentence": r["sentence"], "label": int(r["label"] == "pos")} for r in ROWS],
                                      features=features)
    assert {e.target for e in _load(TaskSpec("t", data=data)).train} == {"neg", "pos"}


@pytest.mark.parametrize("data,message", [(42, "got int"), ({"train": 3}, "got dict"), ("rows.jsonl", "got str")])
def test_data_of_another_type_is_refused_naming_it(data, message):
    with pytest.raises(DataError, match=f"data must be a datasets.Dataset.*{message}") as info:
        TaskSpec("t", data=data)
    assert info.value.field == "data"


def test_a_dataset_without_the_named_split_is_one_line():
    with pytest.raises(DataError, match="has no split 'test'"):
        _load(TaskSpec("t", data={"train": ROWS}))


def test_a_model_object_is_copied_not_changed():
    model = make_model("bert")
    base = load_base_model(model, tokenizer=make_tokenizer("bert"))
    assert base.model is not model and base.kind == "encoder" and base.fingerprint
    assert base.fingerprint == load_base_model(model, tokenizer=make_tokenizer("bert")).fingerprint


def test_a_model_object_needs_its_tokenizer_and_the_right_head():
    with pytest.raises(ModelError, match="needs its tokenizer"):
        load_base_model(make_model("bert"))
    causal_without_head = make_model("llama").model  # LlamaModel: no language-model head
    with pytest.raises(ModelError, match="must come with its language-model head"):
        load_base_model(causal_without_head, tokenizer=make_tokenizer("llama"))
    with pytest.raises(ModelError, match="got int"):
        load_base_model(3, tokenizer=make_tokenizer("bert"))

"""The real-text probe builder: template prefixes removed as a user's data would have none."""

from pathlib import Path

import pytest

from clora.testing.real_tasks import SHARED_TASKS, combinations, probe_task, strip_template

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "CL_Benchmark"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared tasks are not at {DATA}")


@pytest.mark.parametrize("text, bare", [
    ("Title: Rain in Spain\nText: It rained.\n", "Rain in Spain It rained."),
    ("question: is it wet\npassage: Spain (country) -- It rained: a lot.", "is it wet Spain (country) -- It rained: a lot."),
    ("sentence 1: A man sat.\nsentence 2: Nobody sat.", "A man sat. Nobody sat."),
    ("paragraph: P.\nquestion: Q?\ncandidate answer: C", "P. Q? C"),
    ('Which sentence is the effect of "The bell rang."? Choose one between A and B.\nA: We left.\nB: We sang.',
     "The bell rang. We left. We sang."),
    ("word: call\nAfter two raises there was a call.", "call After two raises there was a call."),
    ("No template at all: keep the colon.", "No template at all: keep the colon."),
])
def test_strip_template_removes_field_labels_and_copas_frame(text, bare):
    assert strip_template(text) == bare


def test_combinations_are_distinct_seeded_and_cover_every_task():
    names = list(SHARED_TASKS)
    picked = combinations(names, 3, 12, seed=0)
    assert len(set(picked)) == 12 and all(len(set(c)) == 3 for c in picked)
    assert set().union(*picked) == set(names)
    assert picked == combinations(names, 3, 12, seed=0) and picked != combinations(names, 3, 12, seed=1)


@needs_data
def test_a_probe_task_is_small_seeded_and_has_no_template_left():
    cb = probe_task(DATA, "cb", n_train=60, n_test=60)  # CB's test split holds 56: topped up from train
    assert (len(cb.train), len(cb.test)) == (60, 60) and cb.labels == ["contradiction", "entailment", "neutral"]
    assert not {e.text for e in cb.train} & {e.text for e in cb.test}
    assert not any(e.text.startswith("sentence 1:") or "\nsentence 2:" in e.text for e in cb.train + cb.test)
    kept = probe_task(DATA, "cb", n_train=60, n_test=60, prefixes=True)
    assert all(e.text.startswith("sentence 1:") for e in kept.train)
    assert [strip_template(e.text) for e in kept.train] == [e.text for e in cb.train]
    assert probe_task(DATA, "cb").train == cb.train and probe_task(DATA, "cb", seed=1).train != cb.train
    mnli = probe_task(DATA, "mnli", n_test=300)
    assert "-" not in mnli.labels and all(e.target in mnli.labels for e in mnli.test)  # MNLI's unlabelled rows out
    with pytest.raises(KeyError, match="unknown shared task 'yahoo'"):
        probe_task(DATA, "yahoo")

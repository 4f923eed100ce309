"""Scores of generated text, pinned on hand-made examples, and what a generation task accepts."""

import pytest

from clora.data.task import GENERATION_PROMPT, Example, Task
from clora.errors import ConfigError, DataError
from clora.evaluation.text_metrics import exact_match, normalize_answer, rouge_l, score, token_f1


def test_squad_normalisation():
    assert normalize_answer("  The Cat, sat on A mat! ") == "cat sat on mat"
    assert normalize_answer("an apple") == "apple" and normalize_answer("Theory") == "theory"  # whole words only


def test_exact_match_by_hand():
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel Tower in Paris", "Eiffel Tower") == 0.0


def test_token_f1_by_hand():
    # prediction "red blue green", reference "red green yellow": 2 shared, P = 2/3, R = 2/3, F1 = 2/3
    assert token_f1("red blue green", "red green yellow") == pytest.approx(2 / 3)
    # a repeated token counts as often as both sides have it: "x x y" and "x y y" share one x and one y
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("the", "a") == 1.0  # both normalise to nothing: equal
    assert token_f1("red", "") == 0.0 and token_f1("red", "blue") == 0.0


def test_rouge_l_by_hand():
    # LCS of "the cat sat on the mat" and "the cat lay on the mat" is 5 of 6 tokens each: P = R = F = 5/6
    assert rouge_l("the cat lay on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    # "b a c" vs "a b c": LCS 2 ("a c" or "b c") of 3: F = 2/3
    assert rouge_l("b a c", "a b c") == pytest.approx(2 / 3)
    assert rouge_l("red", "blue") == 0.0


def test_score_is_the_mean_and_names_a_bad_metric():
    assert score("exact_match", ["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    assert score("accuracy", ["red", "blue"], ["red", "red"]) == 0.5
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        score("bleu", ["a"], ["a"])


def _gen(**kwargs):
    base = dict(name="g", instruction="Say", labels=[], train=[Example("x", "red blue")],
                test=[Example("y", "blue")], kind="generation")
    return Task(**{**base, **kwargs})


def test_a_generation_task_has_its_own_defaults_and_checks():
    task = _gen()
    assert task.metric == "exact_match" and task.prompt == GENERATION_PROMPT and task.generative
    assert task.format_prompt("apple") == "Say\napple\nAnswer:"
    assert _gen(metric="rouge_l").metric == "rouge_l"
    with pytest.raises(DataError, match="unknown metric 'bleu' for a generation task"):
        _gen(metric="bleu")
    with pytest.raises(DataError, match="a test example has an empty target"):
        _gen(test=[Example("y", " ")])
    with pytest.raises(DataError, match="max_new_tokens must be a positive integer, got 0"):
        _gen(max_new_tokens=0)
    with pytest.raises(DataError, match="metric 'f1' is for generation tasks"):
        Task("c", "Pick", ["a", "b"], [Example("x", "a")], [Example("x", "b")], metric="f1")
    with pytest.raises(DataError, match="unknown kind 'regression'"):
        _gen(kind="regression")

"""Scores of generated text against a reference answer, a fraction in [0, 1] per example.

- ``exact_match`` and ``f1`` (token F1) after SQuAD's normalisation (Rajpurkar et al.,
  2016, the official evaluation script's rules): lower case, punctuation and the
  articles a/an/the removed, whitespace collapsed.
- ``rouge_l``: the F-measure of ROUGE-L (Lin, 2004; longest common subsequence), from
  Google's ``rouge-score`` package, as TRACE and the SuperNI stream report it.
- ``accuracy``: classification (the prediction is one of the task's labels).

Every metric is the mean over examples of a per-example score, so a task's score is a
fraction like accuracy and the continual-learning metrics (AA, BWT, FWT, forgetting)
are computed on it unchanged (reports show points: 100 x the fraction).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from clora.errors import ConfigError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the normalised answers' tokens."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)  # both empty: a match; one empty: nothing in common
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (``rouge-score``, its default tokenizer: lower case, alphanumeric tokens)."""
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


_SCORER = {}


def _rouge():
    if "rougeL" not in _SCORER:  # built once: rouge-score imports nltk, which takes a moment
        from rouge_score import rouge_scorer

        _SCORER["rougeL"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _SCORER["rougeL"]


def accuracy_score(prediction: str, reference: str) -> float:
    return float(prediction == reference)


METRICS: dict[str, Callable[[str, str], float]] = {"accuracy": accuracy_score, "exact_match": exact_match,
                                                   "f1": token_f1, "rouge_l": rouge_l}


def score(metric: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean per-example ``metric`` (a fraction) of ``predictions`` against ``references``."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})", field="metric")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    fn = METRICS[metric]
    return sum(fn(p, r) for p, r in zip(predictions, references)) / max(len(references), 1)


def example_score(task, prediction: str, target: str) -> float:
    """One answer's score in [0, 1] under ``task.metric`` (``accuracy`` for classification)."""
    return METRICS[task.metric](prediction, target)

"""What a library answers: one :class:`Prediction` per input, and the task a library entry describes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from clora.library.manifest import task_of  # noqa: F401 - where serving code has always found it
from clora.families.base import Answer


@dataclass(frozen=True)
class Prediction:
    """The answer to one input: the task it was answered as, how sure the router was, why, and how sure the
    model is of its answer.

    ``confidence`` is the router's (1 for a trigger or a task the caller names); it says nothing
    about the answer. ``answer_probability`` is the model's own probability of ``prediction``: the
    softmax over the task's options for a label, the geometric mean of the token probabilities
    for a generated answer (``clora.families.base.Answer``); ``None`` where it is not known.
    ``source``: ``trigger``, ``learned``, ``fallback``, ``given`` (a task named by the caller) or
    ``arrow`` (PEFT's Arrow router chose it).
    """

    input: str
    task: str
    confidence: float
    prediction: str
    source: str
    answer_probability: float | None = None

    @property
    def router_confidence(self) -> float:
        """The router's confidence (``confidence``, under a name that says whose it is)."""
        return self.confidence

    def to_dict(self) -> dict:
        """``{"input", "task", "prediction", "answer_probability", "router_confidence", "source", "confidence"}``;
        ``confidence`` repeats ``router_confidence`` for clients written before the split."""
        row = asdict(self)
        return {"input": row["input"], "task": row["task"], "prediction": row["prediction"],
                "answer_probability": row["answer_probability"], "router_confidence": row["confidence"],
                "source": row["source"], "confidence": row["confidence"]}

    def __getitem__(self, key: str):
        """``p["prediction"]``: the mapping view, so code written against the dict keeps working."""
        return getattr(self, key)


def probability_of(answer: Answer) -> float | None:
    """An answer's probability for JSON: rounded to 6 places, ``None`` when it is not a number."""
    return round(answer.probability, 6) if math.isfinite(answer.probability) else None

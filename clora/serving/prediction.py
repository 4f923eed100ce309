"""What a library answers: one :class:`Prediction` per input, and the task a library entry describes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from clora.data.task import DEFAULT_PROMPT, GENERATION_PROMPT, Example, Task


@dataclass(frozen=True)
class Prediction:
    """The answer to one input: the task it was answered as, the router's confidence and why.

    ``source``: ``trigger``, ``learned``, ``fallback``, ``given`` (a task named by the caller) or
    ``arrow`` (PEFT's Arrow router chose it).
    """

    input: str
    task: str
    confidence: float
    prediction: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __getitem__(self, key: str):
        """``p["prediction"]``: the mapping view, so code written against the dict keeps working."""
        return getattr(self, key)


def task_of(entry: dict) -> Task:
    """The :class:`Task` a library entry describes, enough to answer it (label set, prompt, triggers)."""
    kind = entry.get("kind", "classification")
    # answering needs the label set (or the metric and answer length) and the prompt only
    placeholder = [Example("-", entry["labels"][0] if kind == "classification" else "-")]
    default_prompt = GENERATION_PROMPT if kind == "generation" else DEFAULT_PROMPT
    return Task(name=entry["name"], instruction=entry.get("instruction", ""), labels=entry["labels"],
                train=placeholder, test=placeholder, prompt=entry.get("prompt") or default_prompt,
                triggers=entry.get("triggers") or {}, kind=kind, metric=entry.get("metric", "accuracy"),
                max_new_tokens=entry.get("max_new_tokens", 32))

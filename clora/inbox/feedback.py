"""Labelled examples sent to a library (``POST /feedback``, ``Inbox`` users).

Feedback that names a task the library already has is kept as that task's evaluation
data, which the promotion gate re-checks: whoever writes it can sway which promotion
passes. So it is taken only from a trusted sender (a Python user of the library's own
files, or a request that carries the server's admin key) and kept with its source; from
anyone else it is refused. Any other feedback joins the inbox as a labelled record, ready
to be clustered and promoted (behind the gate).
"""

from __future__ import annotations

from clora.errors import CloraError, DataError
from clora.inbox.records import Inbox, Record


class Forbidden(CloraError):
    """A request that needs a privilege it does not carry (a server answers 403)."""

    status = 403


def take_feedback(inbox: Inbox, labels_of: dict[str, list[str]], text: str, label: str | None = None,
                  target: str | None = None, task: str | None = None, *, trusted: bool, source: str) -> dict:
    """Keep one example; ``labels_of`` maps each library task to its label set. Evaluation data for a library
    task needs ``trusted``; ``source`` says who sent it. Returns where it went."""
    if (label is None) == (target is None):
        raise DataError("feedback needs exactly one of label (classification) or target (free text)", field="label")
    record = Record(input=text, kind="feedback", label=label, target=target, task=task)
    if task is not None and task in labels_of:
        if not trusted:
            raise Forbidden(f"feedback for task {task!r} would become its evaluation data, which decides the "
                            "promotion gate: only a request with the server's admin key may add it (send it without "
                            "task to add it to the inbox)")
        if label is not None and label not in labels_of[task]:
            raise DataError(f"label {label!r} is not one of task {task!r}'s labels ({', '.join(labels_of[task])})",
                            field="label")
        inbox.add_evaluation(task, [record], source=source)
        return {"kept_as": "evaluation", "task": task, "source": source}
    inbox.append([record])
    return {"kept_as": "inbox", "id": record.id}

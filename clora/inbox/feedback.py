"""Labelled examples sent to a library (``POST /feedback``, ``Inbox`` users).

Feedback that names a task the library already has is kept as that task's evaluation
data (the promotion gate re-checks it); any other feedback joins the inbox as a labelled
record, ready to be clustered and promoted.
"""

from __future__ import annotations

from clora.errors import DataError
from clora.inbox.records import Inbox, Record


def take_feedback(inbox: Inbox, labels_of: dict[str, list[str]], text: str, label: str | None = None,
                  target: str | None = None, task: str | None = None) -> dict:
    """Keep one example; ``labels_of`` maps each library task to its label set. Returns where it went."""
    if (label is None) == (target is None):
        raise DataError("feedback needs exactly one of label (classification) or target (free text)", field="label")
    record = Record(input=text, kind="feedback", label=label, target=target, task=task)
    if task is not None and task in labels_of:
        if label is not None and label not in labels_of[task]:
            raise DataError(f"label {label!r} is not one of task {task!r}'s labels ({', '.join(labels_of[task])})",
                            field="label")
        inbox.add_evaluation(task, [record])
        return {"kept_as": "evaluation", "task": task}
    inbox.append([record])
    return {"kept_as": "inbox", "id": record.id}

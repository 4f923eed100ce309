"""What a server needs from the inbox, as the plain callables ``ServeSettings`` takes.

The serving layer knows nothing of the inbox (it sits below it); ``clora serve`` and
scripts wire the two together here.
"""

from __future__ import annotations

from clora.inbox.auto import AutoPromoter
from clora.inbox.feedback import take_feedback
from clora.inbox.records import Inbox, Record


def server_hooks(inbox: Inbox | None, record_unrouted: bool = False, promoter: AutoPromoter | None = None) -> dict:
    """``ServeSettings`` fields: record fallbacks into ``inbox`` (when ``record_unrouted``), answer
    ``POST /feedback`` into it, and run ``promoter`` beside the server."""
    if inbox is None:
        return {"background": promoter}

    def record(answers) -> None:
        inbox.append([Record(input=a.input, guess=a.task, confidence=a.confidence, answer=a.prediction)
                      for a in answers])

    def feedback(body: dict, labels_of: dict, admin: bool = False) -> dict:
        return take_feedback(inbox, labels_of, body["input"], body.get("label"), body.get("target"), body.get("task"),
                             trusted=admin, source="admin feedback")

    return {"record": record if record_unrouted else None, "feedback": feedback, "background": promoter}

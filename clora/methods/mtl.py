"""``mtl``: one adapter trained once on the union of every task (an upper bound, not continual)."""

from __future__ import annotations

from clora.methods.seq import SeqMethod


class MTLMethod(SeqMethod):
    """Multi-task: one adapter trained once on the union of every task (an upper bound)."""

    name = "mtl"
    joint = True

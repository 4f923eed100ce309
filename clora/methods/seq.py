"""``seq`` (SeqLoRA): one adapter trained on every task in turn, the forgetting baseline."""

from __future__ import annotations

from clora.adapters.lora import Factors
from clora.methods.base import Method


class SeqMethod(Method):
    """SeqLoRA: one adapter trained on every task in turn (the forgetting baseline)."""

    name = "seq"
    keeps_snapshots = False

    def begin_task(self, lora, task_index):
        if len(lora) == 0:
            gen = self._generator(0)
            lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, self.config.rank, gen))
        return lora.parameters(0)

    def snapshot(self, learned):
        return [0] if learned > 0 else []

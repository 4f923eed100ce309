"""``inc`` (IncLoRA): a new adapter per task; earlier adapters frozen and active, no constraint."""

from __future__ import annotations

from clora.adapters.lora import Factors
from clora.methods.base import Method


class IncMethod(Method):
    """IncLoRA: a new adapter per task; earlier adapters frozen and active, no constraint."""

    name = "inc"

    def begin_task(self, lora, task_index):
        gen = self._generator(task_index)
        index = lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, self.config.rank, gen))
        return lora.parameters(index)

    def end_task(self, lora, task_index, run_inputs):
        lora.freeze(task_index)

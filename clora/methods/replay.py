"""``replay``: IncLoRA plus a small buffer of earlier tasks' training examples (uses stored data).

Experience replay is the common reference in continual learning (e.g. Chaudhry et al.
2019, "On tiny episodic memories in continual learning"): after each task a fixed share
of its training examples (``replay_fraction``, 2% by default, at least one and at most
``replay_max``) is kept, and every later task trains its new adapter on its own examples
plus the whole buffer. Earlier
adapters stay frozen, as in ``inc``; the buffer teaches the new adapter not to disturb the
earlier tasks in ``sum`` mode. Unlike every other method here it stores users' data,
which reports say.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from clora.data.task import Example, Task
from clora.methods.inc import IncMethod
from clora.methods.replay_settings import ReplaySettings


def replay_sample(examples: list[Example], fraction: float, generator: torch.Generator,
                  most: int | None = None) -> list[Example]:
    """``ceil(fraction * len(examples))`` examples (at least one, at most ``most``) drawn without replacement,
    in a seeded order."""
    count = min(len(examples), max(1, math.ceil(fraction * len(examples))), most or len(examples))
    order = torch.randperm(len(examples), generator=generator)[:count].tolist()
    return [examples[i] for i in sorted(order)]


class ReplayMethod(IncMethod):
    """IncLoRA trained on each new task plus a buffer of ``replay_fraction`` of every earlier task."""

    name = "replay"
    settings: ReplaySettings
    uses_stored_data = True

    def __init__(self, config):
        super().__init__(config)
        #: one Task per earlier task, holding only its stored examples (single-task batches keep its label set)
        self.buffer: list[Task] = []
        self._pending: list[Task] = []

    def training_tasks(self, tasks: list[Task], task_index: int) -> list[Task]:
        """The new task(s) plus the buffer; the new task's own sample joins the buffer once it is learnt."""
        gen = self._generator(task_index)
        self._pending = [dataclasses.replace(t, name=f"{t.name} (replay)",
                                             train=replay_sample(t.train, self.settings.replay_fraction, gen,
                                                                 self.settings.replay_max))
                         for t in tasks]
        return list(tasks) + self.buffer

    def end_task(self, lora, task_index, run_inputs):
        super().end_task(lora, task_index, run_inputs)
        self.buffer += self._pending
        self._pending = []
        stored = sum(len(t.train) for t in self.buffer)
        self.notes[:] = [f"replay uses stored data: {stored} training examples of earlier tasks kept "
                         f"({self.settings.replay_fraction:.0%} of each task"
                         + (f", at most {self.settings.replay_max}" if self.settings.replay_max else "")
                         + ") and trained on with every later task"]

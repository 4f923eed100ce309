"""How each new adapter is constrained: the ``seq``, ``inc`` and ``orth`` methods.

A method decides which adapter(s) are trained for task ``t``, which are active while it
trains, what happens when it ends, and which adapters make up *snapshot k* (the model
state after learning ``k`` tasks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clora.config import RunConfig
from clora.lora import Factors, LoRASet


class Method:
    """Base class. ``begin_task`` returns the parameters to train."""

    name = "?"
    #: True when earlier adapters never change, so snapshot i stays available (oracle mode).
    keeps_snapshots = True
    #: True when one adapter is trained once on the union of all tasks (not continual).
    joint = False

    def __init__(self, config: RunConfig):
        self.config = config
        self.notes: list[str] = []  # user-facing remarks (e.g. reduced ranks), shown in the report
        self.bases: dict[str, torch.Tensor] = {}  # per module: reserved subspace U (orth only)

    def begin_task(self, lora: LoRASet, task_index: int) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def end_task(self, lora: LoRASet, task_index: int, run_inputs: Callable[[], None], masks=None) -> None:
        """Called after training task ``task_index``.

        ``run_inputs()`` replays the task's training inputs through the model and
        ``masks()`` gives the token mask of the batch being replayed.
        """

    def penalty(self, lora: LoRASet) -> torch.Tensor | None:
        """A regulariser added to the task loss at every step (None: nothing to add)."""
        return None

    def snapshot(self, learned: int) -> list[int]:
        """Adapter indices active after ``learned`` tasks (0 = base model)."""
        return list(range(learned))

    def subspace_report(self) -> dict:
        """Per module: dimensions reserved by earlier tasks (empty for unconstrained methods)."""
        return {}

    def _generator(self, task_index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1000 + task_index)


class SeqMethod(Method):
    """SeqLoRA: one adapter trained on every task in turn (the forgetting baseline)."""

    name = "seq"
    keeps_snapshots = False

    def begin_task(self, lora, task_index):
        if len(lora) == 0:
            gen = self._generator(0)
            lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, self.config.rank, gen))
        lora.activate([0])
        return lora.parameters(0)

    def snapshot(self, learned):
        return [0] if learned > 0 else []


class IncMethod(Method):
    """IncLoRA: a new adapter per task; earlier adapters frozen and active, no constraint."""

    name = "inc"

    def begin_task(self, lora, task_index):
        gen = self._generator(task_index)
        index = lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, self.config.rank, gen))
        lora.activate(range(index + 1))
        return lora.parameters(index)

    def end_task(self, lora, task_index, run_inputs, masks=None):
        lora.freeze(task_index)


def make_method(config: RunConfig) -> Method:
    """The method object named by ``config.method``."""
    from clora.baselines import MTLMethod, OLieMethod, OLoRAMethod
    from clora.orth import OrthMethod

    classes = {"seq": SeqMethod, "inc": IncMethod, "olora": OLoRAMethod, "olie": OLieMethod,
               "orth": OrthMethod, "mtl": MTLMethod}
    return classes[config.method](config)

"""What every method implements: how a new adapter is added, trained and finished.

A method decides which adapter(s) are trained for task ``t``, what happens when it
ends, and which adapters make up *snapshot k* (the model state after learning ``k``
tasks). A task trains with the adapters of snapshot ``t + 1`` selected; the caller
passes that selection (``clora.adapters.selection.use_adapters``), the method never
sets it on the layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clora.adapters.factor_set import LoRASet
from clora.config import RunConfig
from clora.data.task import Task
from clora.settings import MethodSettings


class Method:
    """Base class. ``begin_task`` adds the task's adapter and returns the parameters to train."""

    name = "?"
    #: True when earlier adapters never change, so snapshot i stays available (oracle mode).
    keeps_snapshots = True
    #: True when one adapter is trained once on the union of all tasks (not continual).
    joint = False
    #: True when the method keeps a reserved subspace per module (``reserved`` in ``__init__``).
    uses_subspace = False
    #: True when the method keeps earlier tasks' examples and trains on them again (reports say so).
    uses_stored_data = False

    def __init__(self, config: RunConfig):
        self.config = config
        #: the method's own knobs (``clora/methods/<name>_settings.py``)
        self.settings: MethodSettings = config.settings
        self.notes: list[str] = []  # user-facing remarks (e.g. reduced ranks), shown in the report

    @property
    def taylor_order(self) -> int | None:
        """Order of the multiplicative update's Taylor exp; ``None`` for additive LoRA (the layers' form)."""
        return None

    def plan(self, num_tasks: int, model: torch.nn.Module) -> None:
        """Called once before a stream's first task with its length and the adapted model."""

    def begin_task(self, lora: LoRASet, task_index: int) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def initialise(self, lora: LoRASet, task_index: int, kind: str, run_loss: Callable[[], None]) -> None:
        """Called after ``begin_task`` with the task's snapshot selected: ``kind`` is the task's kind and
        ``run_loss()`` back-propagates the loss of a sample of its training examples (no step).
        Nothing to do for most methods."""

    def training_tasks(self, tasks: list[Task], task_index: int) -> list[Task]:
        """What task ``task_index`` trains on: its own task(s), plus anything the method adds (``replay``)."""
        return list(tasks)

    def end_task(self, lora: LoRASet, task_index: int, run_inputs: Callable[[], None]) -> None:
        """Called after training task ``task_index``; ``run_inputs()`` replays its training inputs."""

    def param_groups(self, params: list[torch.nn.Parameter], lr: float) -> list[dict]:
        """The optimiser's parameter groups for a task's ``params`` (default: all of them at ``lr``)."""
        return [{"params": list(params), "lr": lr}]

    def after_step(self, optimizer: torch.optim.Optimizer, done: int, total: int) -> None:
        """Called after each of a task's ``total`` optimiser steps (``done`` so far): set rates for the next."""

    def penalty(self, lora: LoRASet) -> torch.Tensor | None:
        """A regulariser added to the task loss at every step (None: nothing to add)."""
        return None

    def snapshot(self, learned: int) -> list[int]:
        """Adapter indices active after ``learned`` tasks (0 = base model)."""
        return list(range(learned))

    def adapter_of(self, task_index: int) -> int:
        """The index of task ``task_index``'s own (summed) adapter."""
        return task_index

    def answering(self, task_index: int) -> list[int]:
        """The adapters that answer task ``task_index``'s inputs when it is chosen (oracle, routed, ``--task``):
        its snapshot, and its private adapter where the method trains one."""
        private = self.private_of(task_index)
        return self.snapshot(task_index + 1) + ([] if private is None else [private])

    def begin_private(self, lora: LoRASet, task_index: int) -> list[torch.nn.Parameter] | None:
        """After ``end_task``: add task ``task_index``'s private adapter and return its parameters to train, or
        ``None`` (the default) for a method without one."""
        return None

    def private_of(self, task_index: int) -> int | None:
        """The index of task ``task_index``'s private adapter (``None``: it has none)."""
        return None

    def private_steps(self, task_steps: int) -> int:
        """How many optimiser steps a private adapter trains for, after its task's ``task_steps``."""
        return 0

    def private_groups(self, params: list[torch.nn.Parameter], lr: float) -> list[dict]:
        """The optimiser's parameter groups for a private adapter's ``params``."""
        return [{"params": list(params), "lr": lr}]

    def library_factors(self, lora: LoRASet, index: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per module, the ``(A, B)`` a library stores for adapter ``index``."""
        return lora.factors(index)

    def reserved_by(self, task_index: int) -> dict[str, torch.Tensor] | None:
        """Per module, the ``(d_in, k)`` directions task ``task_index`` reserved (None: the method reserves none)."""
        return None

    def leftover_by(self, task_index: int) -> dict[str, torch.Tensor] | None:
        """Per module, the ``(d_in, m)`` leftover-energy factor task ``task_index`` recorded (orth's attenuation)."""
        return None

    def subspace_report(self) -> dict:
        """Per module: dimensions reserved by earlier tasks (empty for unconstrained methods)."""
        return {}

    def _generator(self, task_index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1000 + task_index)

"""The one-task recipe every path that trains an adapter follows: run, add-task, promote, benchmarks.

A method opens the task's trainable parameters (``begin_task``), starts them from what it
measures (``initialise``: orth's frames from the task's loss gradient), the loop trains them
(``train_task``) and the method closes the task (``end_task``: orth reserves its input
directions from the replayed inputs). All of it runs with ``selection`` active, the adapters
the new task trains beside (its snapshot), so what it learns is what that snapshot answers.
A method with private adapters (orth's ``private_rank``) then trains the task's private adapter
with everything else frozen, in the snapshot that answers the task (``Method.answering``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clora.adapters.factor_set import LoRASet
from clora.adapters.selection import use_adapters
from clora.config import RunConfig
from clora.data.task import Task
from clora.families import Family
from clora.methods.base import Method
from clora.training.distributed import Workers
from clora.training.loop import TrainStats, gradient_pass, replay_inputs, train_task, with_private


def learn_task(family: Family, method: Method, lora: LoRASet, index: int, tasks: Sequence[Task],
               config: RunConfig, selection: Sequence[int], workers: Workers | None = None) -> TrainStats:
    """Train adapter ``index`` on ``tasks`` (one task, or every task at once for a joint method).

    ``selection``: adapter indices active while it trains (``index`` among them). The method
    may add to what is trained on (``replay``'s buffer); its first task's inputs start and
    close the task.
    """
    params = open_task(family, method, lora, index, tasks[0], config, selection)
    with use_adapters(selection):
        stats = train_task(family, method.training_tasks(list(tasks), index), params, config, task_index=index,
                           penalty=lambda: method.penalty(lora), workers=workers,
                           groups=method.param_groups(params, config.lr), after_step=method.after_step)
    close_task(family, method, lora, index, tasks[0], config, selection)
    private = method.begin_private(lora, index)
    if private is None:
        return stats
    with use_adapters(list(selection) + [method.private_of(index)]):  # the snapshot that answers this task
        trained = train_task(family, method.training_tasks(list(tasks), index), private, config, task_index=index,
                             workers=workers, groups=method.private_groups(private, config.lr),
                             steps=method.private_steps(stats.steps))
    lora.freeze(method.private_of(index))
    return with_private(stats, trained)


def open_task(family: Family, method: Method, lora: LoRASet, index: int, task: Task, config: RunConfig,
              selection: Sequence[int]) -> list[torch.nn.Parameter]:
    """The first half of the recipe: adapter ``index``'s trainable parameters, started as the method says."""
    params = method.begin_task(lora, index)
    with use_adapters(selection):
        method.initialise(lora, index, task.kind, run_loss=lambda: gradient_pass(family, task, config, index))
    return params


def close_task(family: Family, method: Method, lora: LoRASet, index: int, task: Task, config: RunConfig,
               selection: Sequence[int]) -> None:
    """The last half: the method closes the task (orth reserves its input directions from ``task``'s inputs)."""
    with use_adapters(selection):
        method.end_task(lora, index, run_inputs=lambda: replay_inputs(family, task, config))

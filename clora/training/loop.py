"""The training loop for one task's adapter, top to bottom."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence

import geoopt
import torch
from tqdm.auto import tqdm

from clora.config import FEW_STEPS, MIN_STEPS, RunConfig
from clora.training.distributed import Workers
from clora.families import Family
from clora.data.batches import batches
from clora.data.task import Example, Task

log = logging.getLogger("clora")


def epoch_batches(tasks: Sequence[Task], size: int, generator: torch.Generator) -> list[tuple[Task, list[Example]]]:
    """One epoch: every task's training set cut into single-task batches, all shuffled together.

    Batches hold one task each because a batch is scored against one label set.
    """
    pairs = []
    for task in tasks:
        order = torch.randperm(len(task.train), generator=generator).tolist()
        pairs += [(task, batch) for batch in batches(task.train, size, order)]
    if len(tasks) > 1:
        pairs = [pairs[i] for i in torch.randperm(len(pairs), generator=generator).tolist()]
    return pairs


def train_step(family: Family, task: Task, batch: Sequence[Example], params: Sequence[torch.nn.Parameter],
               optimizer: torch.optim.Optimizer, penalty: Callable[[], torch.Tensor | None] | None = None,
               workers: Workers | None = None) -> float:
    """One optimiser step on ``batch``; returns its mean task loss.

    With several processes each one takes its share of the batch, scales its loss by its
    share's size and the gradients are summed: the step equals the one-process step on
    the whole batch. The penalty, the same on every process, counts once (on the main one).
    """
    workers = workers or Workers()
    share = workers.share(batch)
    optimizer.zero_grad(set_to_none=True)
    loss_value = 0.0
    total = None
    if share:
        loss = family.loss(task, share) * (len(share) / len(batch))
        total, loss_value = loss, loss.item()
    extra = penalty() if penalty is not None and workers.is_main else None
    if extra is not None:
        total = extra if total is None else total + extra
    if total is not None:
        total.backward()
    workers.sum_gradients(params)
    optimizer.step()
    return workers.sum(loss_value)


@dataclass(frozen=True)
class TrainStats:
    """One task's training: optimiser steps, whole epochs, the last epoch's mean loss, seconds."""

    steps: int
    epochs: int
    final_loss: float
    seconds: float
    #: the private adapter's training, after this (``clora.methods.orth``'s ``private_rank``)
    private: TrainStats | None = None

    def summary(self) -> dict:
        """The fields a report's ``training`` rows keep (seconds go to its ``timing``)."""
        row = {"steps": self.steps, "epochs": self.epochs, "final_loss": self.final_loss}
        if self.private is not None:
            row.update(private_steps=self.private.steps, private_final_loss=self.private.final_loss)
        return row


def train_task(family: Family, tasks: Task | Sequence[Task], params: list[torch.nn.Parameter], config: RunConfig,
               task_index: int = 0, penalty: Callable[[], torch.Tensor | None] | None = None,
               workers: Workers | None = None, groups: list[dict] | None = None,
               after_step: Callable[[torch.optim.Optimizer, int, int], None] | None = None,
               steps: int | None = None) -> TrainStats:
    """Train ``params`` on ``tasks`` (one task, or several jointly) for ``config.epochs`` epochs, or more
    whole epochs until ``config.min_steps`` optimiser steps (``RunConfig.epochs_for``); or, given
    ``steps``, for exactly that many optimiser steps (the last epoch cut short).

    The step minimises the family's loss plus ``penalty()`` (a method's regulariser). ``groups``: the
    optimiser's parameter groups (default: ``params`` at ``config.lr``); ``after_step(optimizer, done,
    total)`` may set the groups' rates after each step (a method's schedule).
    One Riemannian Adam optimiser serves every parameter: it takes Riemannian steps
    (projected gradient, retraction) on geoopt ManifoldParameters and plain Adam steps
    on Euclidean ones. ``workers`` splits each batch over processes (``clora.training.distributed``).
    Returns the step and epoch counts, the last epoch's mean loss and seconds.
    """
    tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
    workers = workers or Workers()
    groups = groups if groups is not None else [{"params": list(params), "lr": config.lr}]
    optimizer = geoopt.optim.RiemannianAdam(groups, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed * 7919 + task_index)
    steps_per_epoch = sum(-(-len(t.train) // config.batch_size) for t in tasks)
    epochs = config.epochs_for(steps_per_epoch) if steps is None else -(-steps // steps_per_epoch)
    total_steps = steps_per_epoch * epochs if steps is None else steps
    if total_steps < FEW_STEPS and workers.is_main and steps is None:
        log.warning("%s trains for only %d optimiser steps (%d examples, %d epochs): a task learns little in so "
                    "few steps; give more epochs, or leave them unset so that a small task trains for at least "
                    "min_steps (%d) steps", "+".join(t.name for t in tasks), total_steps,
                    sum(len(t.train) for t in tasks), epochs, MIN_STEPS)
    started, losses = time.perf_counter(), []
    bar = tqdm(total=total_steps, desc=f"train {'+'.join(t.name for t in tasks)}",
               unit="step", disable=not config.progress or not workers.is_main, leave=False)
    for _ in range(epochs):
        for task, batch in epoch_batches(tasks, config.batch_size, generator)[:total_steps - len(losses)]:
            losses.append(train_step(family, task, batch, params, optimizer, penalty, workers))
            if after_step is not None:
                after_step(optimizer, len(losses), total_steps)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    tail = losses[-steps_per_epoch:]
    return TrainStats(len(losses), epochs, sum(tail) / len(tail), time.perf_counter() - started)


def with_private(stats: TrainStats, private: TrainStats) -> TrainStats:
    """``stats`` of a task's own adapter with its private adapter's training beside (seconds summed)."""
    return dataclasses.replace(stats, seconds=stats.seconds + private.seconds, private=private)


#: examples whose loss gradient starts orth's frames (a seeded sample of the training set)
GRADIENT_EXAMPLES = 256


def gradient_pass(family: Family, task: Task, config: RunConfig, task_index: int = 0,
                  limit: int = GRADIENT_EXAMPLES) -> None:
    """Back-propagate the loss of a seeded sample of ``task``'s training examples, taking no step.

    Every process of a data-parallel run takes the same sample, so a frame started from
    these gradients is the same on all of them.
    """
    generator = torch.Generator().manual_seed(config.seed * 7919 + task_index)
    order = torch.randperm(len(task.train), generator=generator).tolist()[:limit]
    sample = [task.train[i] for i in order]
    for batch in batches(sample, config.batch_size):
        (family.loss(task, batch) * (len(batch) / len(sample))).backward()


@torch.no_grad()
def replay_inputs(family: Family, task: Task, config: RunConfig) -> None:
    """Run every training input of ``task`` forward once (for activation statistics)."""
    for batch in batches(task.train, config.eval_batch_size):
        family.replay(task, batch)

"""The training loop for one task's adapter, top to bottom."""

from __future__ import annotations

import time
from collections.abc import Sequence

import geoopt
import torch
from tqdm.auto import tqdm

from clora.config import RunConfig
from clora.families import Family
from clora.task import Example, Task


def batches(examples: Sequence[Example], size: int, order: Sequence[int] | None = None):
    """Consecutive batches of ``size`` examples (the last may be shorter), in ``order``."""
    order = range(len(examples)) if order is None else order
    order = list(order)
    for start in range(0, len(order), size):
        yield [examples[i] for i in order[start:start + size]]


def train_task(family: Family, task: Task, params: list[torch.nn.Parameter], config: RunConfig,
               task_index: int = 0, examples: Sequence[Example] | None = None) -> dict:
    """Train ``params`` on ``task`` for ``config.epochs`` epochs; returns loss and timing.

    One Riemannian Adam optimiser serves every parameter: it takes Riemannian steps
    (projected gradient, retraction) on geoopt ManifoldParameters and plain Adam steps
    on Euclidean ones. ``examples`` defaults to ``task.train``.
    """
    examples = task.train if examples is None else examples
    optimizer = geoopt.optim.RiemannianAdam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed * 7919 + task_index)
    steps_per_epoch = -(-len(examples) // config.batch_size)
    started, losses = time.perf_counter(), []
    bar = tqdm(total=steps_per_epoch * config.epochs, desc=f"train {task.name}", unit="step",
               disable=not config.progress, leave=False)
    for _ in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for batch in batches(examples, config.batch_size, order):
            loss = family.loss(task, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    tail = losses[-steps_per_epoch:]
    return {"steps": len(losses), "final_loss": sum(tail) / len(tail), "seconds": time.perf_counter() - started}


@torch.no_grad()
def replay_inputs(family: Family, task: Task, config: RunConfig) -> None:
    """Run every training input of ``task`` forward once (for activation statistics)."""
    for batch in batches(task.train, config.eval_batch_size):
        family.replay(task, batch)

"""Accuracy of the model's current state on a task's test examples."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from clora.config import RunConfig
from clora.families import Family
from clora.data.task import Task
from clora.training.loop import batches


@torch.no_grad()
def correct_flags(family: Family, task: Task, config: RunConfig, desc: str | None = None) -> list[bool]:
    """Per test example (in ``task.test`` order): is the predicted label the target (exact match)?

    Examples are batched in order of length so that little compute goes to padding;
    the attention mask makes each prediction independent of its batch-mates.
    """
    flags = [False] * len(task.test)
    steps = -(-len(task.test) // config.eval_batch_size)
    by_length = sorted(range(len(task.test)), key=lambda i: len(task.test[i].text))
    for chunk in tqdm(list(batches(by_length, config.eval_batch_size)), total=steps,
                      desc=desc or f"eval {task.name}", unit="batch", disable=not config.progress, leave=False):
        predictions = family.predict(task, [task.test[i].text for i in chunk])
        for i, p in zip(chunk, predictions):
            flags[i] = p == task.test[i].target
    return flags


def accuracy(family: Family, task: Task, config: RunConfig, desc: str | None = None) -> float:
    """Share of ``task.test`` whose predicted label equals the target (exact match)."""
    flags = correct_flags(family, task, config, desc)
    return sum(flags) / len(flags)

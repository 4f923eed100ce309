"""Accuracy of the model's current state on a task's test examples."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from clora.config import RunConfig
from clora.families import Family
from clora.task import Task
from clora.train import batches


@torch.no_grad()
def accuracy(family: Family, task: Task, config: RunConfig, desc: str | None = None) -> float:
    """Share of ``task.test`` whose predicted label equals the target (exact match).

    Examples are batched in order of length so that little compute goes to padding;
    the attention mask makes each prediction independent of its batch-mates.
    """
    correct = 0
    steps = -(-len(task.test) // config.eval_batch_size)
    by_length = sorted(range(len(task.test)), key=lambda i: len(task.test[i].text))
    for batch in tqdm(batches(task.test, config.eval_batch_size, by_length), total=steps,
                      desc=desc or f"eval {task.name}", unit="batch", disable=not config.progress, leave=False):
        predictions = family.predict(task, [ex.text for ex in batch])
        correct += sum(p == ex.target for p, ex in zip(predictions, batch))
    return correct / len(task.test)

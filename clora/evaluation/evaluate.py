"""A task's score (accuracy, or a generation task's metric) in the model's current state."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from clora.config import RunConfig
from clora.families import Family
from clora.data.task import Task
from clora.evaluation.text_metrics import example_score
from clora.training.loop import batches


@torch.no_grad()
def example_scores(family: Family, task: Task, config: RunConfig, desc: str | None = None) -> list[float]:
    """Per test example (in ``task.test`` order): its score in [0, 1] under the task's metric (classification:
    1 when the predicted label is the target; generation: EM, token F1 or ROUGE-L of the greedy answer).

    Examples are batched in order of length so that little compute goes to padding;
    the attention mask makes each prediction independent of its batch-mates.
    """
    flags = [0.0] * len(task.test)
    steps = -(-len(task.test) // config.eval_batch_size)
    by_length = sorted(range(len(task.test)), key=lambda i: len(task.test[i].text))
    for chunk in tqdm(list(batches(by_length, config.eval_batch_size)), total=steps,
                      desc=desc or f"eval {task.name}", unit="batch", disable=not config.progress, leave=False):
        predictions = family.predict(task, [task.test[i].text for i in chunk])
        for i, p in zip(chunk, predictions):
            flags[i] = example_score(task, p, task.test[i].target)
    return flags


def accuracy(family: Family, task: Task, config: RunConfig, desc: str | None = None) -> float:
    """The task's score on ``task.test``: accuracy, or for a generation task the mean of its metric."""
    flags = example_scores(family, task, config, desc)
    return sum(flags) / len(flags)

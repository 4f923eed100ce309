"""Held-out calibration of the learned trigger's out-of-distribution test.

A task's mean training ``D^2`` (``tr(Sigma^-1 S_t) / n_t``) is optimistic when the task
has few examples: the covariance was estimated from those same inputs, and in the
directions where they happen to vary little the precision is large while they, by
construction, lie close. Fresh inputs of the same kind then sit 1.7x to 2.4x further out
(MiniLM, three tasks of 60 examples: docs/routing.md), past the margin, and every one of
them falls back. With 1000 examples per task the gap is a few percent.

The fix is measured, not modelled: when a task's statistics are made, its inputs are
split into ``folds``; each fold's mean ``D^2`` is taken to the task's mean *without* that
fold, under the pooled precision *without* it (the earlier tasks' statistics included).
The ratio of that held-out mean to the training mean is stored with the statistics and
scales the task's typical distance ever after (``clora.routing.lda.typical_distances``).
So is the *spread*: the 95th percentile of the held-out ``D^2`` over their mean. Fresh
inputs of a task do not sit at one distance (templated or mixed sources give a long
tail: 1.4x to 2.6x the mean on the small tasks), and the out-of-distribution test
compares an input with that reach rather than with the mean. Only the two numbers are
kept: no raw example and no extra matrix.
"""

from __future__ import annotations

import dataclasses

import torch

from clora.routing.lda import TaskStats, shared_precision, squared_distances

FOLDS = 5
SPREAD_QUANTILE = 0.95


def heldout_ratio(features: torch.Tensor, others: list[TaskStats], shrinkage: float,
                  folds: int = FOLDS, whole: TaskStats | None = None) -> tuple[float, float]:
    """``(ratio, spread)`` of a task whose inputs have ``features`` ``(n, d)``: the held-out over the
    training mean ``D^2``, and the 95th percentile of the held-out ``D^2`` over their mean.

    ``others``: the statistics of the tasks learnt before it (they share the covariance).
    ``whole``: the task's statistics when the caller has them already.
    Returns ``(1.0, 1.0)`` when the task has too few inputs to hold any out (n < 4).
    """
    x = features.double()
    n = x.shape[0]
    if n < 4:
        return 1.0, 1.0
    folds = min(folds, n // 2)
    whole = whole if whole is not None else TaskStats.of(x)
    training = _distances_to(x, whole, others, shrinkage).mean()
    held = []
    for k in range(folds):
        out = torch.zeros(n, dtype=torch.bool)
        out[k::folds] = True  # inputs arrive shuffled (seeded sampling), so every folds-th one is a fair split
        rest = TaskStats.of(x[~out])
        held.append(_distances_to(x[out], rest, others, shrinkage))
    held = torch.cat(held)
    ratio, spread = float(held.mean() / training), float(held.quantile(SPREAD_QUANTILE) / held.mean())
    if not (ratio == ratio and ratio > 0 and spread == spread and spread > 0):
        return 1.0, 1.0  # NaN-safe: degenerate features keep the old test
    return ratio, max(spread, 1.0)


def _distances_to(x: torch.Tensor, stats: TaskStats, others: list[TaskStats], shrinkage: float) -> torch.Tensor:
    precision = shared_precision(others + [stats], shrinkage)
    return squared_distances(x, stats.mean[None, :], precision)[:, 0]


def calibrate_all(features: list[torch.Tensor], shrinkage: float) -> list[TaskStats]:
    """Statistics of several tasks (``features[t]`` ``(n_t, d)``), each calibrated against all the others."""
    plain = [TaskStats.of(x) for x in features]
    return [calibrated_stats(x, plain[:t] + plain[t + 1:], shrinkage, plain[t]) for t, x in enumerate(features)]


def calibrated_stats(features: torch.Tensor, others: list[TaskStats], shrinkage: float,
                     stats: TaskStats | None = None) -> TaskStats:
    """The task's statistics (``stats`` when already computed) with its held-out ratio and spread."""
    stats = stats if stats is not None else TaskStats.of(features)
    heldout, spread = heldout_ratio(features, others, shrinkage, whole=stats)
    return dataclasses.replace(stats, heldout=heldout, spread=spread)

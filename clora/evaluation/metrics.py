"""Continual-learning metrics over an accuracy matrix, as pure functions.

``acc[j][i]`` is the accuracy on task ``i`` after training through task ``j`` (fractions in
[0, 1]; rows = after task j). ``T`` tasks give a ``T x T`` matrix; all indices are 0-based.

The metrics read ``a[j][i]`` for ``i <= j`` (AA, BWT, forgetting) and ``a[i-1][i]`` (FWT) only;
entries further right (``i > j + 1``: a task two or more steps ahead) may be ``None``
(``clora run`` does not evaluate them).
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _check_square(acc: Matrix) -> int:
    size = len(acc)
    if size == 0 or any(len(row) != size for row in acc):
        raise ValueError(f"accuracy matrix must be square and non-empty, got {[len(r) for r in acc]} rows")
    return size


def average_accuracy(acc: Matrix) -> float:
    """AA = mean_i a[T][i]: the accuracy over all tasks after the last one."""
    size = _check_square(acc)
    return sum(acc[-1]) / size


def backward_transfer(acc: Matrix) -> float:
    """BWT = mean_{i<T} (a[T][i] - a[i][i])  (Lopez-Paz & Ranzato, NeurIPS 2017).

    Negative means forgetting. 0.0 for a single task.
    """
    size = _check_square(acc)
    if size < 2:
        return 0.0
    return sum(acc[-1][i] - acc[i][i] for i in range(size - 1)) / (size - 1)


def forgetting(acc: Matrix) -> float:
    """F = mean_{i<T} (max_{l<T} a[l][i] - a[T][i])  (Chaudhry et al., ECCV 2018).

    The max runs over rows l = i .. T-1 (a task cannot be forgotten before it is learnt).
    """
    size = _check_square(acc)
    if size < 2:
        return 0.0
    drops = [max(acc[l][i] for l in range(i, size - 1)) - acc[-1][i] for i in range(size - 1)]
    return sum(drops) / (size - 1)


def forward_transfer(acc: Matrix, base: Sequence[float]) -> float | None:
    """FWT = mean_{i>=2} (a[i-1][i] - b_i)  (GEM, Lopez-Paz & Ranzato 2017), 1-based i.

    ``base[i]`` is the accuracy of the model with no adapter on task ``i``. 0.0 for one task.
    """
    size = _check_square(acc)
    if len(base) != size:
        raise ValueError(f"need one base accuracy per task ({size}), got {len(base)}")
    if size < 2:
        return 0.0
    if any(acc[i - 1][i] is None for i in range(1, size)):
        return None  # the next task was not evaluated (routed mode: its router does not know it yet)
    return sum(acc[i - 1][i] - base[i] for i in range(1, size)) / (size - 1)


def summarize(acc: Matrix, base: Sequence[float]) -> dict:
    """The report's per-mode block: the matrix and AA, BWT, forgetting, FWT."""
    return {"accuracy_matrix": [[None if x is None else float(x) for x in row] for row in acc],
            "average_accuracy": average_accuracy(acc),
            "bwt": backward_transfer(acc),
            "forgetting": forgetting(acc),
            "fwt": forward_transfer(acc, base)}

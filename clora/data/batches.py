"""Cutting a sequence into batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], size: int, order: Sequence[int] | None = None) -> Iterator[list[T]]:
    """Consecutive batches of ``size`` items (the last may be shorter), in ``order`` (default: as given)."""
    order = list(range(len(items)) if order is None else order)
    for start in range(0, len(order), size):
        yield [items[i] for i in order[start:start + size]]

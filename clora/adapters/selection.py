"""Which adapters act on which input: an argument of each call, never state on a module.

A transformers model calls its linear layers as ``self.q_proj(hidden)``: there is no way
to hand a per-call argument down to them through ``model(...)``. PEFT's answer
(``adapter_names=``) registers forward hooks on every layer for the duration of the
call, which is state on shared modules: two threads would see each other's choice.
clora passes an explicit :class:`AdapterSelection` down the call stack in a
:mod:`contextvars` variable instead. Each thread (and each asyncio task) has its own
context, so concurrent forward passes with different selections never interfere and
need no lock:

    with use_adapters(AdapterSelection.of([0, 2])):
        model(**batch)          # every LoRA layer applies adapters 0 and 2

The same channel carries the token mask of the batch in flight (``batch_tokens``),
which activation statistics use to leave padding out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AdapterSelection:
    """The adapters of one forward call.

    ``indices``: the same adapters for every input (a *snapshot*; empty = the base model).
    ``mask``: ``(batch, n_adapters)`` 0/1, input ``b`` uses the adapters ``mask[b]`` selects
    (a mixed batch); when set it overrides ``indices``.
    """

    indices: tuple[int, ...] = ()
    mask: torch.Tensor | None = None

    @classmethod
    def of(cls, indices: Iterable[int]) -> "AdapterSelection":
        return cls(indices=tuple(int(i) for i in indices))

    @classmethod
    def routed(cls, mask: torch.Tensor) -> "AdapterSelection":
        """Per-input adapters; a batch whose rows all agree runs as that one snapshot (cheaper)."""
        if len(mask) and bool((mask == mask[0]).all()):
            return cls.of(torch.nonzero(mask[0]).flatten().tolist())
        return cls(mask=mask)


NO_ADAPTERS = AdapterSelection()
_selection: ContextVar[AdapterSelection] = ContextVar("clora_adapter_selection", default=NO_ADAPTERS)
_tokens: ContextVar[torch.Tensor | None] = ContextVar("clora_batch_tokens", default=None)


def current_selection() -> AdapterSelection:
    """The selection of the call in flight in this thread (no adapters outside any ``use_adapters``)."""
    return _selection.get()


@contextmanager
def use_adapters(selection: AdapterSelection | Iterable[int]) -> Iterator[AdapterSelection]:
    """Run the block with ``selection`` (or a list of adapter indices) as this thread's adapters."""
    if not isinstance(selection, AdapterSelection):
        selection = AdapterSelection.of(selection)
    token = _selection.set(selection)
    try:
        yield selection
    finally:
        _selection.reset(token)


def no_adapters():
    """The bare base model inside the block (label anchors, router features, base mode)."""
    return use_adapters(NO_ADAPTERS)


def routed(mask: torch.Tensor):
    """Input ``b`` uses the adapters ``mask[b]`` ``(batch, n_adapters)`` selects inside the block."""
    return use_adapters(AdapterSelection.routed(mask))


def current_tokens() -> torch.Tensor | None:
    """``(batch, seq)`` attention mask of the batch in flight, when its family published one."""
    return _tokens.get()


@contextmanager
def batch_tokens(mask: torch.Tensor) -> Iterator[None]:
    """Publish the batch's token mask to whatever reads layer inputs during the block."""
    token = _tokens.set(mask)
    try:
        yield
    finally:
        _tokens.reset(token)

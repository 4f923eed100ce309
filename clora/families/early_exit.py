"""Hidden states after layer k without running the layers above it.

The router reads the hidden states after layer ``k`` of ``L`` (``hidden_states[k]`` in
transformers' terms). Asking the model for ``output_hidden_states`` runs all ``L``
layers; stopping once block ``k`` has run costs ``k / L`` of that. Every block carries
one forward hook, installed once (:func:`install_exit_hooks`), that ends the forward
pass with the block's output when the call in flight asked to stop there. The request
travels in a context variable, so a concurrent call on the same model that did not ask
runs through: no hook is added or removed per call.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import torch
from torch import nn

_stop_at: ContextVar[nn.Module | None] = ContextVar("clora_stop_at", default=None)
_HOOKED = "_clora_exit_hook"


class _Reached(Exception):
    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def _exit_hook(module, args, output):
    if _stop_at.get() is module:
        raise _Reached(output[0] if isinstance(output, tuple) else output)


def layer_blocks(model: nn.Module, n_layers: int) -> nn.ModuleList | None:
    """The model's stack of ``n_layers`` transformer blocks (the first such ModuleList), or None."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    return None


def install_exit_hooks(model: nn.Module, n_layers: int) -> None:
    """Give each of the model's blocks the exit hook (once; called while the model is being set up)."""
    blocks = layer_blocks(model, n_layers)
    for block in blocks or []:
        if not getattr(block, _HOOKED, False):
            block.register_forward_hook(_exit_hook)
            setattr(block, _HOOKED, True)


def hidden_after_block(run: Callable[[], object], block: nn.Module) -> torch.Tensor:
    """Call ``run()`` (a forward pass) and return ``block``'s output ``(batch, seq, hidden)``, stopping there."""
    token = _stop_at.set(block)
    try:
        run()
    except _Reached as stop:
        return stop.hidden
    finally:
        _stop_at.reset(token)
    raise RuntimeError("the forward pass never reached the router layer")  # pragma: no cover


def hidden_states_at(model: nn.Module, batch: dict, layer: int, n_layers: int) -> torch.Tensor:
    """``model(**batch, output_hidden_states=True).hidden_states[layer]``, running only ``layer`` blocks.

    The last layer's states are taken the full way (some models normalise them there),
    as are those of a model whose blocks carry no exit hook.
    """
    blocks = layer_blocks(model, n_layers)
    if blocks is None or not 1 <= layer < n_layers or not getattr(blocks[layer - 1], _HOOKED, False):
        return model(**batch, output_hidden_states=True).hidden_states[layer]
    return hidden_after_block(lambda: model(**batch), blocks[layer - 1])

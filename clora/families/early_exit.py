"""Hidden states after layer k without running the layers above it.

The router reads the hidden states after layer ``k`` of ``L`` (``hidden_states[k]`` in
transformers' terms). Asking the model for ``output_hidden_states`` runs all ``L``
layers; stopping once block ``k`` has run costs ``k / L`` of that. A forward hook on
block ``k`` (``blocks[k-1]``) raises with the block's output, which ends the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class _Reached(Exception):
    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def layer_blocks(model: nn.Module, n_layers: int) -> nn.ModuleList | None:
    """The model's stack of ``n_layers`` transformer blocks (the first such ModuleList), or None."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    return None


def hidden_after_block(run: Callable[[], object], block: nn.Module) -> torch.Tensor:
    """Call ``run()`` (a forward pass) and return ``block``'s output ``(batch, seq, hidden)``, stopping there."""
    def reached(module, args, output):
        raise _Reached(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(reached)
    try:
        run()
    except _Reached as stop:
        return stop.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass never reached the router layer")  # pragma: no cover


def hidden_states_at(model: nn.Module, batch: dict, layer: int, n_layers: int) -> torch.Tensor:
    """``model(**batch, output_hidden_states=True).hidden_states[layer]``, running only ``layer`` blocks.

    The last layer's states are taken the full way (some models normalise them there).
    """
    blocks = layer_blocks(model, n_layers)
    if blocks is None or not 1 <= layer < n_layers:
        return model(**batch, output_hidden_states=True).hidden_states[layer]
    return hidden_after_block(lambda: model(**batch), blocks[layer - 1])

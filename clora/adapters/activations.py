"""Second-moment statistics of the inputs that reach each LoRA layer."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clora.adapters.lora import LoRALinear
from clora.adapters.selection import current_tokens


@torch.no_grad()
def input_second_moments(layers: dict[str, LoRALinear], run_inputs: Callable[[], None]) -> dict[str, torch.Tensor]:
    """``{name: R}`` with ``R = sum_n x_n x_n^T`` ``(d_in, d_in)`` over the tokens that reach
    each layer while ``run_inputs()`` runs (float64 accumulation).

    Where the family published the batch's token mask ``(batch, seq)``
    (``clora.adapters.selection.batch_tokens``) and a layer's input is
    ``(batch, seq, d_in)`` of that shape, padding tokens are left out: they carry no task
    information but would add the same directions many times.
    """
    sums = {name: torch.zeros(layer.d_in, layer.d_in, dtype=torch.float64) for name, layer in layers.items()}

    def hook_for(name):
        def hook(module, args):
            x = args[0].detach()
            mask = current_tokens()
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
                x = x[mask.bool()]
            x = x.reshape(-1, x.shape[-1]).double()
            sums[name].add_((x.T @ x).cpu())  # bases live on the CPU, whatever the device
        return hook

    # hooks live only while the statistics are taken, on a model no other call is using
    run_with_hooks(layers, lambda name, layer: layer.register_forward_pre_hook(hook_for(name)), run_inputs)
    return sums


def run_with_hooks(layers: dict[str, LoRALinear], register, run: Callable[[], None]) -> None:
    """``run()`` with ``register(name, layer)``'s hook on every layer, removed afterwards whatever happens."""
    handles = [register(name, layer) for name, layer in layers.items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()

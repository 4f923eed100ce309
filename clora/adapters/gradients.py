"""The loss gradient with respect to each LoRA layer's weight, taken with hooks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clora.adapters.activations import run_with_hooks
from clora.adapters.lora import LoRALinear


def weight_gradients(layers: dict[str, LoRALinear], run_loss: Callable[[], None]) -> dict[str, torch.Tensor]:
    """``{name: G}`` with ``G = dL/dW = sum_n g_n x_n^T`` ``(d_out, d_in)`` (float64, on the CPU),
    for the losses ``run_loss()`` back-propagates.

    ``x_n`` is a token's input to the layer and ``g_n`` the gradient of the loss at the
    layer's output for that token, so ``G`` is the gradient the layer's weight would get,
    whatever adapters are folded into it. Padding tokens have ``g_n = 0`` and add nothing.
    The base weights stay frozen: the product is taken in a hook on each layer's output.
    """
    sums = {name: torch.zeros(layer.d_out, layer.d_in, dtype=torch.float64) for name, layer in layers.items()}

    def hook_for(name):
        def hook(module, args, output):
            if not output.requires_grad:
                return
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()

            def accumulate(grad):
                g = grad.detach().reshape(-1, grad.shape[-1]).double()
                sums[name].add_((g.T @ x).cpu())
            output.register_hook(accumulate)
        return hook

    run_with_hooks(layers, lambda name, layer: layer.register_forward_hook(hook_for(name)), run_loss)
    return sums

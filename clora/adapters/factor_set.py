"""The LoRA layers of one model, grown and frozen together, one adapter index at a time."""

from __future__ import annotations

from torch import nn

from clora.adapters.lora import Factors, LoRALinear


class LoRASet:
    """The LoRA layers of one model: add, replace and freeze adapters across every layer.

    It holds no selection: which adapters act on a call is passed with
    ``clora.adapters.selection.use_adapters``.
    """

    def __init__(self, layers: dict[str, LoRALinear]):
        self.layers = layers

    def __len__(self) -> int:
        first = next(iter(self.layers.values()))
        return len(first.adapters)

    def add(self, make) -> int:
        """Append one adapter per layer, ``make(name, layer) -> nn.Module``; returns its index."""
        for name, layer in self.layers.items():
            # factors are made on the CPU (seeded generators); they live with the layer
            layer.adapters.append(make(name, layer).to(layer.base.weight.device))
        return len(self) - 1

    def replace(self, index: int, make) -> None:
        """Swap adapter ``index`` in every layer for ``make(name, layer, old)``."""
        for name, layer in self.layers.items():
            layer.adapters[index] = make(name, layer, layer.adapters[index])

    def freeze(self, index: int) -> None:
        """Materialise adapter ``index`` as frozen plain factors (A and B as they are now)."""
        self.replace(index, lambda n, l, old: Factors.frozen(old.factor_a(), old.factor_b()))

    def parameters(self, index: int) -> list[nn.Parameter]:
        """Trainable parameters of adapter ``index`` across all layers."""
        return [p for layer in self.layers.values() for p in layer.adapters[index].parameters() if p.requires_grad]

    def factors(self, index: int) -> dict:
        """``{layer name: (A (r, d_in), B (d_out, r))}`` of adapter ``index``, detached, on the CPU."""
        return {n: (layer.adapters[index].factor_a().detach().cpu(), layer.adapters[index].factor_b().detach().cpu())
                for n, layer in self.layers.items()}

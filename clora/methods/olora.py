"""``olora``: O-LoRA (Wang et al., EMNLP 2023 Findings), IncLoRA plus a soft orthogonality penalty."""

from __future__ import annotations

import torch

from clora.adapters.factor_set import LoRASet
from clora.adapters.penalties import l2_penalty, olora_penalty
from clora.methods.inc import IncMethod
from clora.methods.olora_settings import OLoRASettings


class OLoRAMethod(IncMethod):
    """O-LoRA: loss + lambda1 * sum_i sum |A_i A_t^T| + lambda2 * L2 of the new factors."""

    name = "olora"
    settings: OLoRASettings

    def begin_task(self, lora: LoRASet, task_index: int):
        params = super().begin_task(lora, task_index)
        # frozen earlier A's per module, gathered once per task rather than every step
        self._earlier = {n: [layer.adapters[i].factor_a().detach() for i in range(task_index)]
                         for n, layer in lora.layers.items()}
        return params

    def penalty(self, lora: LoRASet) -> torch.Tensor | None:
        total = None
        for name, layer in lora.layers.items():
            factors = layer.adapters[len(lora) - 1]
            term = self.settings.lambda1 * olora_penalty(self._earlier[name], factors.factor_a())
            if self.settings.lambda2:
                term = term + self.settings.lambda2 * l2_penalty([factors.factor_a(), factors.factor_b()])
            total = term if total is None else total + term
        return total

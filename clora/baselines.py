"""The published baselines clora is measured against: O-LoRA, OLieRA and multi-task.

``olora`` and ``olie`` are IncLoRA (a new adapter per task, earlier ones frozen and
active) plus a soft orthogonality penalty; ``olie`` also changes the update rule to a
multiplicative one. ``mtl`` trains one adapter once on the union of the stream.
"""

from __future__ import annotations

import torch

from clora.lora import LoRASet
from clora.methods import IncMethod, SeqMethod
from clora.penalties import l2_penalty, olie_factor, olie_penalty, olora_penalty


class OLoRAMethod(IncMethod):
    """O-LoRA (Wang et al., EMNLP 2023 Findings): loss + lambda1 * sum_i sum |A_i A_t^T| + lambda2 * L2."""

    name = "olora"

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
            term = self.config.lambda1 * olora_penalty(self._earlier[name], factors.factor_a())
            if self.config.lambda2:
                term = term + self.config.lambda2 * l2_penalty([factors.factor_a(), factors.factor_b()])
            total = term if total is None else total + term
        return total


class OLieMethod(IncMethod):
    """OLieRA (arXiv 2509.06100): W' = W (.) exp(s B A) + olie_lambda * sum_i ||E_i E_t^T||_F.

    ``E = exp(s B A) - 1`` is the centred factor (see ``clora.penalties.olie_penalty``).
    """

    name = "olie"

    def begin_task(self, lora: LoRASet, task_index: int):
        for layer in lora.layers.values():
            layer.taylor_order = self.config.taylor_order
        params = super().begin_task(lora, task_index)
        self._earlier = {n: [self._factor(layer, i).detach() for i in range(task_index)]
                         for n, layer in lora.layers.items()}
        return params

    def _factor(self, layer, index: int) -> torch.Tensor:
        f = layer.adapters[index]
        return olie_factor(f.factor_b(), f.factor_a(), layer.scaling, self.config.taylor_order)

    def penalty(self, lora: LoRASet) -> torch.Tensor | None:
        current = len(lora) - 1  # the adapter being trained is the newest
        if current == 0 or not self.config.olie_lambda:
            return None
        total = sum(olie_penalty(self._earlier[n], self._factor(layer, current))
                    for n, layer in lora.layers.items())
        return self.config.olie_lambda * total


class MTLMethod(SeqMethod):
    """Multi-task: one adapter trained once on the union of every task (an upper bound)."""

    name = "mtl"
    joint = True

"""``olie``: OLieRA (arXiv 2509.06100), a multiplicative update with an orthogonality penalty."""

from __future__ import annotations

import torch

from clora.adapters.factor_set import LoRASet
from clora.adapters.penalties import olie_factor, olie_penalty
from clora.methods.inc import IncMethod
from clora.methods.olie_settings import OLieSettings


class OLieMethod(IncMethod):
    """OLieRA: W' = W (.) exp(s B A) + olie_lambda * sum_i ||E_i E_t^T||_F.

    ``E = exp(s B A) - 1`` is the centred factor (see ``clora.adapters.penalties.olie_penalty``).
    The layers apply the multiplicative form because the method says so when they are
    made (``taylor_order``).
    """

    name = "olie"
    settings: OLieSettings

    @property
    def taylor_order(self) -> int:
        return self.settings.taylor_order

    def begin_task(self, lora: LoRASet, task_index: int):
        params = super().begin_task(lora, task_index)
        self._earlier = {n: [self._factor(layer, i).detach() for i in range(task_index)]
                         for n, layer in lora.layers.items()}
        return params

    def _factor(self, layer, index: int) -> torch.Tensor:
        f = layer.adapters[index]
        return olie_factor(f.factor_b(), f.factor_a(), layer.scaling, self.settings.taylor_order)

    def penalty(self, lora: LoRASet) -> torch.Tensor | None:
        current = len(lora) - 1  # the adapter being trained is the newest
        if current == 0 or not self.settings.olie_lambda:
            return None
        total = sum(olie_penalty(self._earlier[n], self._factor(layer, current))
                    for n, layer in lora.layers.items())
        return self.settings.olie_lambda * total

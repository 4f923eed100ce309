"""``osf``: PEFT's Orthogonal Subspace Fine-tuning, used through peft (the peer a practitioner would pick).

OSF (Nayak et al. 2025, arXiv:2504.07097; ``peft.OSFConfig``) splits each target weight
by its SVD ``W = U_high S_high V_high + U_low S_low V_low``, freezes the top
``effective_rank`` singular directions and trains ``U_low``, ``S_low``, ``V_low`` with
gradients projected away from the frozen ones: full-rank fine-tuning in the complement
of the weight's most important directions. For a stream, PEFT's continual example
applies OSF afresh for every task with a rising preserved fraction (0.3, 0.5, 0.7 over
three tasks); clora does the same, linear from ``osf_preserve[0]`` on the first task to
``osf_preserve[1]`` on the last, and merges each task's update into the weights
(``merge_and_unload``) before the next SVD.

The encoder family's label anchors stay those of the untrained model (computed before
the first task), as for every other method. Like ``seq``, one set of weights serves every task: no snapshot survives, so oracle
equals sum and there is nothing to route. The run's library holds the total change of
each target weight as one adapter (its exact SVD factors), owned by the last task.
"""

from __future__ import annotations

import torch

from clora.adapters.factor_set import LoRASet
from clora.errors import ConfigError
from clora.methods.base import Method
from clora.methods.osf_settings import OSFSettings


def _peft_osf():
    """peft's ``(OSFConfig, OSFModel)``: peft is an optional dependency (``pip install 'clora[osf]'``)."""
    try:
        from peft import OSFConfig
        from peft.tuners.osf import OSFModel
    except ImportError:
        raise ConfigError("method osf runs PEFT's OSF and needs peft 0.18 or later: pip install 'clora[osf]'",
                          field="method") from None
    return OSFConfig, OSFModel


def preserved_fraction(first: float, last: float, task_index: int, num_tasks: int) -> float:
    """The fraction of singular directions OSF freezes for task ``task_index`` of ``num_tasks`` (linear)."""
    if num_tasks <= 1:
        return first
    return first + (last - first) * task_index / (num_tasks - 1)


def delta_factors(delta: torch.Tensor, scaling: float, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A (k, d_in), B (d_out, k))`` with ``scaling * B A = delta`` ``(d_out, d_in)``, from its SVD.

    ``k`` counts the singular values above ``rtol`` times the largest (at least one), so
    the factors reproduce ``delta`` to rounding error at the smallest rank that does.
    """
    u, s, vt = torch.linalg.svd(delta.double(), full_matrices=False)
    k = max(1, int((s > rtol * s.max()).sum())) if s.numel() and s.max() > 0 else 1
    return vt[:k].float().cpu(), (u[:, :k] * s[:k] / scaling).float().cpu()


class OSFMethod(Method):
    """PEFT's OSF on each target weight, task after task, with a rising preserved fraction."""

    name = "osf"
    settings: OSFSettings
    keeps_snapshots = False

    def __init__(self, config):
        super().__init__(config)
        self._osf_config, self._osf_model = _peft_osf()  # fails here, before any data or model is loaded
        self.num_tasks = 1
        self.initial: dict[str, torch.Tensor] = {}  # target -> its weight before the first task (d_out, d_in)
        self._tuner = None  # peft's OSFModel while a task trains
        self._model: torch.nn.Module | None = None

    def plan(self, num_tasks: int, model: torch.nn.Module) -> None:
        """``model``: the transformers model whose target weights OSF trains (``lora``'s layers sit in it)."""
        self.num_tasks, self._model = num_tasks, model

    def begin_task(self, lora: LoRASet, task_index: int):
        if not self.initial:  # the weights before the first task: the library stores the change from them
            self.initial = {name: layer.weight_out_in().detach().clone() for name, layer in lora.layers.items()}
        fraction = preserved_fraction(*self.settings.osf_preserve, task_index, self.num_tasks)
        config = self._osf_config(target_modules=[f"{name}.base" for name in lora.layers], effective_rank=fraction)
        self._tuner = self._osf_model(self._model, config, "default")  # wraps each target's frozen weight in place
        self.notes[:] = [f"osf preserved {preserved_fraction(*self.settings.osf_preserve, 0, self.num_tasks):.0%} "
                         f"to {fraction:.0%} of each weight's singular directions (first to latest task)"]
        return [p for n, p in self._model.named_parameters() if "osf_svd_params" in n]

    def end_task(self, lora: LoRASet, task_index: int, run_inputs) -> None:
        self._tuner.merge_and_unload()  # the update joins the weights; the next task takes a fresh SVD
        self._tuner = None

    def snapshot(self, learned: int) -> list[int]:
        return []

    def library_factors(self, lora: LoRASet, index: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per target, the total change of its weight since the first task as factors ``(A, B)``."""
        return {name: delta_factors(layer.weight_out_in().detach() - self.initial[name], layer.scaling)
                for name, layer in lora.layers.items()}

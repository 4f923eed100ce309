"""``orth``: exactly orthogonal LoRA on the Stiefel manifold (clora's method).

Per module, ``U`` ``(d_in, k)`` is an orthonormal basis of the input directions earlier
tasks use. The new adapter's ``A_t = X_t^T (I - U U^T)`` with ``X_t`` ``(d_in, r)`` a point
of the Stiefel manifold (``X^T X = I``), trained by geoopt's Riemannian Adam (Bécigneul &
Ganea, ICLR 2019) with a Cayley (Lie-group) or QR retraction. Then ``A_t U = 0`` whatever
the optimiser does, so the new update ``B_t A_t`` is blind to the reserved directions.
``X_t`` starts at random in the complement, or (``frame_init: gradient``, a generation
task's default) along the free directions where the task's loss falls fastest.

Subspace sources: ``adapters`` adds the row space of each finished ``A_t`` (as O-LoRA
orthogonalises against earlier A's); ``activations`` adds the principal directions of the
task's layer inputs up to an energy threshold (GPM, Saha et al. 2021; InfLoRA, Liang &
Li 2024); ``both`` adds both.
"""

from __future__ import annotations

import geoopt
import torch
from torch import nn

from clora.adapters.activations import input_second_moments
from clora.adapters.attenuation import attenuated_rows, attenuation_directions, leftover_factor
from clora.adapters.capacity import low_capacity_warnings, reservation_budget
from clora.adapters.factor_set import LoRASet
from clora.adapters.lora import Factors
from clora.adapters.gradients import weight_gradients
from clora.adapters.stiefel import param_groups, schedule_frames, stiefel_manifold
from clora.adapters.subspace import (complement_dim, empty_basis, energy_directions, extend_basis, gradient_frame,
                                     random_complement_frame)
from clora.errors import ConfigError
from clora.methods.base import Method
from clora.methods.orth_settings import OrthSettings


class StiefelFactors(nn.Module):
    """``A = X^T (I - U U^T)`` with ``X`` ``(d_in, r)`` on the Stiefel manifold; ``B`` ``(d_out, r)`` starts at zero.

    With ``attenuation`` ``(V (d_in, m), a (m,))`` (``clora.adapters.attenuation``), ``A = X^T S``:
    the free directions ``V`` are also scaled down by ``a``.
    """

    def __init__(self, basis: torch.Tensor, d_out: int, rank: int, retraction: str,
                 generator: torch.Generator | None = None, attenuation: tuple | None = None):
        super().__init__()
        frame = random_complement_frame(basis, rank, generator)
        self.x = geoopt.ManifoldParameter(frame, manifold=stiefel_manifold(retraction))
        self.register_buffer("basis", basis.clone())
        self.lora_B = nn.Parameter(torch.zeros(d_out, rank))
        v, scale = attenuation if attenuation is not None else (basis.new_zeros(basis.shape[0], 0), basis.new_zeros(0))
        self.register_buffer("attenuated", v.to(basis.dtype))
        self.register_buffer("attenuation", scale.to(basis.dtype))

    def factor_a(self) -> torch.Tensor:
        """``(r, d_in)``: the frame's rows with any component inside span(U) removed (attenuated ones scaled)."""
        xt = self.x.T
        if self.attenuated.shape[1]:
            return attenuated_rows(xt, self.basis, self.attenuated, self.attenuation)
        if self.basis.shape[1] == 0:
            return xt
        return xt - (xt @ self.basis) @ self.basis.T

    def factor_b(self) -> torch.Tensor:
        return self.lora_B


class OrthMethod(Method):
    """A new Stiefel-constrained adapter per task, orthogonal to every reserved direction."""

    name = "orth"
    settings: OrthSettings
    uses_subspace = True

    def __init__(self, config, reserved: dict[str, torch.Tensor] | None = None,
                 leftover: dict[str, torch.Tensor] | None = None):
        super().__init__(config)
        #: per module, the reserved subspace U (d_in, k): a library's, then each task's directions
        self.bases: dict[str, torch.Tensor] = {name: u.clone() for name, u in (reserved or {}).items()}
        self.contributions: dict[int, dict[str, torch.Tensor]] = {}
        #: per module, earlier tasks' leftover energy F (d_in, n) (``clora.adapters.attenuation``):
        #: a library's, then each task's (``leftovers``); read only with ``attenuation`` > 0
        self.library_leftover: dict[str, torch.Tensor] = dict(leftover or {})
        self.leftovers: dict[int, dict[str, torch.Tensor]] = {}
        #: how many tasks the subspace budget plans room for (None: no plan, the energy threshold alone);
        #: a run resolves it to the stream's length (``clora.workflows.run.planned``), a library stores it
        self.horizon: int | None = self.settings.capacity_tasks
        self.kinds: dict[int, str] = {}  # task index -> its kind, which decides its energy and frame start
        #: task index -> the index of its orthogonal adapter, and of its private one (``private_rank`` > 0)
        self.adapters: dict[int, int] = {}
        self.privates: dict[int, int] = {}

    def _rank_for(self, name: str, basis: torch.Tensor) -> int:
        free = complement_dim(basis)
        if free == 0:
            raise ConfigError(f"module {name!r} has no free directions left (subspace holds all "
                              f"{basis.shape[0]}); remove a task and release its directions, lower the energy, or plan "
                              "the stream's length (capacity_tasks)", field="energy")
        if free < self.config.rank:
            self.notes.append(f"module {name}: only {free} free directions left, rank reduced "
                              f"from {self.config.rank} to {free}")
        return min(self.config.rank, free)

    def begin_task(self, lora: LoRASet, task_index: int):
        gen = self._generator(task_index)

        def make(name, layer):
            basis = self.bases.setdefault(name, empty_basis(layer.d_in))
            return StiefelFactors(basis, layer.d_out, self._rank_for(name, basis), self.settings.retraction, gen,
                                  attenuation=self._attenuation(name, basis))

        index = lora.add(make)
        self.adapters[task_index] = index
        return lora.parameters(index)

    def adapter_of(self, task_index: int) -> int:
        """In a run, task t's orthogonal adapter is adapter t, or 2t when every task also has a private one."""
        return self.adapters.get(task_index, task_index * (2 if self.settings.private_rank else 1))

    def snapshot(self, learned: int) -> list[int]:
        """The orthogonal adapters of the first ``learned`` tasks (never a private one: they are not summed)."""
        return [self.adapter_of(t) for t in range(learned)]

    def begin_private(self, lora: LoRASet, task_index: int):
        """A free LoRA of rank ``private_rank`` beside the task's frozen orthogonal adapter (Hu et al. 2022's
        start: A Kaiming-uniform, B zero), or ``None`` with ``private_rank`` 0.

        It may read every input direction, reserved or not, because it acts only where this task's snapshot
        answers: an input answered by task i's snapshot never meets a later task's private adapter.
        """
        if not self.settings.private_rank:
            return None
        gen = self._generator(task_index + 500)  # its own stream: the orthogonal frames' draws stay as they were
        rank = self.settings.private_rank
        self.privates[task_index] = lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, rank, gen))
        return lora.parameters(self.privates[task_index])

    def private_of(self, task_index: int) -> int | None:
        return self.privates.get(task_index)

    def private_steps(self, task_steps: int) -> int:
        return max(1, round(self.settings.private_share * task_steps))

    def private_groups(self, params, lr: float) -> list[dict]:
        return [{"params": list(params), "lr": self.settings.private_rate(lr)}]

    def param_groups(self, params, lr: float) -> list[dict]:
        """B at ``lr``; each frame at ``frame_lr`` scaled by ``sqrt(d_in r)`` (``clora.adapters.stiefel``)."""
        return param_groups(params, lr, self.settings.frame_rate(lr))

    def after_step(self, optimizer, done: int, total: int) -> None:
        schedule_frames(optimizer, self.settings.frame_schedule, done, total)

    def initialise(self, lora: LoRASet, task_index: int, kind: str, run_loss) -> None:
        """Remember the task's kind (its energy threshold); with a ``gradient`` frame start, start each
        frame along the steepest free directions of the task's loss.

        A random frame in the free directions sees a random rank-r slice of the inputs, and
        the frame moves slowly on the manifold, so B spends the task learning through it.
        """
        self.kinds[task_index] = kind
        if self.settings.frame_init_for(kind) != "gradient":
            return
        gradients = weight_gradients(lora.layers, run_loss)
        for name, layer in lora.layers.items():
            factors = layer.adapters[self.adapters[task_index]]
            frame = gradient_frame(gradients[name], factors.basis, factors.x.shape[1])
            with torch.no_grad():
                factors.x.copy_(frame.to(factors.x.dtype))
        for p in lora.parameters(self.adapters[task_index]):  # the pass took no step; leave no gradient behind
            p.grad = None

    def end_task(self, lora: LoRASet, task_index: int, run_inputs):
        index = self.adapters[task_index]
        lora.freeze(index)
        before = {name: u.shape[1] for name, u in self.bases.items()}
        energy = self.settings.energy_for(self.kinds.get(task_index, "classification"))
        attenuate = self.settings.attenuation > 0
        moments = input_second_moments(lora.layers, run_inputs) \
            if attenuate or self.settings.subspace in ("activations", "both") else {}
        if self.settings.subspace in ("activations", "both"):
            for name, r in moments.items():
                directions = energy_directions(r, self.bases[name], energy)
                self.bases[name] = extend_basis(self.bases[name], directions[:, :self._budget(name, task_index)])
        if self.settings.subspace in ("adapters", "both"):
            for name, (a, _) in lora.factors(index).items():
                self.bases[name] = extend_basis(self.bases[name], a.T)
        # what this task reserved; a library stores it per task so a removal can release it
        self.contributions[task_index] = {name: u[:, before[name]:] for name, u in self.bases.items()}
        if attenuate:  # what later tasks' adapters scale down: the energy this task left outside the subspace
            self.leftovers[task_index] = {name: leftover_factor(r, self.bases[name]).float()
                                          for name, r in moments.items()}
        self.notes += low_capacity_warnings({name: complement_dim(u) for name, u in self.bases.items()},
                                            self.config.rank, after=f" after task {task_index + 1}")

    def _budget(self, name: str, task_index: int) -> int:
        """Energy directions task ``task_index`` may reserve in module ``name`` (its adapter's rank aside)."""
        free = complement_dim(self.bases[name])
        if self.horizon is None:
            return free
        own = self.config.rank if self.settings.subspace == "both" else 0
        budget = reservation_budget(free, self.config.rank, self.horizon - task_index - 1)
        return max(0, budget - own)

    def _attenuation(self, name: str, basis: torch.Tensor) -> tuple | None:
        """``(V, a)`` for a new adapter in module ``name``, or ``None`` with attenuation off."""
        if self.settings.attenuation <= 0:
            return None
        parts = [self.library_leftover[name]] if name in self.library_leftover else []
        parts += [self.leftovers[j][name] for j in sorted(self.leftovers) if name in self.leftovers[j]]
        factor = torch.cat(parts, dim=1) if parts else basis.new_zeros(basis.shape[0], 0)
        return attenuation_directions(basis, factor, self.settings.attenuation)

    def leftover_by(self, task_index: int) -> dict[str, torch.Tensor] | None:
        """The leftover energy factors task ``task_index`` recorded per module (a library stores them)."""
        return self.leftovers.get(task_index)

    def reserved_counts(self) -> list[dict[str, int]]:
        """Per task (in order), the directions it reserved per module."""
        return [{name: int(u.shape[1]) for name, u in self.contributions[j].items()}
                for j in sorted(self.contributions)]

    def reserved_by(self, task_index: int) -> dict[str, torch.Tensor] | None:
        return self.contributions.get(task_index)

    def subspace_report(self) -> dict:
        return {name: {"reserved": int(u.shape[1]), "d_in": int(u.shape[0])} for name, u in self.bases.items()}

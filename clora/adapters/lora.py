"""LoRA layers: a frozen base linear map plus a list of per-task low-rank adapters.

For an input ``x`` ``(..., d_in)`` a :class:`LoRALinear` returns
``base(x) + scaling * x A^T B^T`` where ``A`` ``(R, d_in)`` and ``B`` ``(d_out, R)`` are the
row/column concatenation of the *selected* adapters' factors (Hu et al., ICLR 2022). A
set of selected adapters is one LoRA of rank ``R = sum r_i``: that is a *snapshot*. Which
adapters are selected is an argument of each call (``clora.adapters.selection``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clora.adapters.penalties import olie_factor
from clora.adapters.selection import current_selection
from clora.errors import ModelError

try:  # GPT-2 style models store linear maps transposed in Conv1D
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - very old transformers
    Conv1D = ()


class Factors(nn.Module):
    """Plain LoRA factors: ``lora_A`` ``(r, d_in)`` (Kaiming-uniform) and ``lora_B`` ``(d_out, r)`` (zero)."""

    def __init__(self, d_in: int, d_out: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default (kaiming_uniform, a=sqrt(5))
        a = (torch.rand(rank, d_in, generator=generator) * 2 - 1) * bound
        self.lora_A = nn.Parameter(a)
        self.lora_B = nn.Parameter(torch.zeros(d_out, rank))

    @classmethod
    def frozen(cls, a: torch.Tensor, b: torch.Tensor) -> "Factors":
        """Frozen factors holding copies of ``a`` ``(r, d_in)`` and ``b`` ``(d_out, r)``."""
        f = cls.__new__(cls)
        nn.Module.__init__(f)
        f.lora_A = nn.Parameter(a.detach().clone(), requires_grad=False)
        f.lora_B = nn.Parameter(b.detach().clone(), requires_grad=False)
        return f

    def factor_a(self) -> torch.Tensor:
        return self.lora_A

    def factor_b(self) -> torch.Tensor:
        return self.lora_B


def linear_dims(module: nn.Module) -> tuple[int, int]:
    """``(d_in, d_out)`` of an ``nn.Linear`` or a transformers ``Conv1D``."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if Conv1D and isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    raise TypeError(f"not a linear layer: {type(module).__name__}")


class LoRALinear(nn.Module):
    """A frozen linear layer with a growing list of adapters.

    Which adapters act on an input is not stored here: each forward reads the
    :class:`~clora.adapters.selection.AdapterSelection` of the call in flight
    (``use_adapters``), so one layer serves concurrent calls with different adapters.

    By default the update is additive (LoRA). With ``taylor_order`` set (at construction:
    it is how this layer's adapters are applied, not a per-call choice) it is
    multiplicative (OLieRA): ``W' = W (.) prod_i exp(s B_i A_i)``, each exp a Taylor series.
    """

    def __init__(self, base: nn.Module, scaling: float, taylor_order: int | None = None, merge_frozen: bool = True):
        super().__init__()
        self.base = base
        self.d_in, self.d_out = linear_dims(base)
        self.scaling = scaling
        self.adapters = nn.ModuleList()
        self.taylor_order = taylor_order
        #: fold frozen selected adapters into one cached weight while training (see ``_additive``)
        self.merge_frozen = merge_frozen
        self._cache: dict[str, tuple] = {}  # see ``_memo``: derived from the parameters, never per call

    def forget_cached(self) -> None:
        """Drop every weight derived from the adapters (a copy that gets new adapters starts clean)."""
        self._cache = {}

    @property
    def transposed(self) -> bool:
        """True for GPT-2's Conv1D, which stores its weight as ``(d_in, d_out)`` (PEFT's fan_in_fan_out)."""
        return not isinstance(self.base, nn.Linear)

    @property
    def quantized(self) -> bool:
        """True when the base layer stores its weight quantized (bitsandbytes' int8 or nf4, QLoRA)."""
        return not self.base.weight.dtype.is_floating_point

    def weight_out_in(self) -> torch.Tensor:
        """The base weight as ``(d_out, d_in)`` (Conv1D stores it transposed).

        A quantized layer's is the weight it applies, read by applying it to the identity:
        ``base(I) - bias``, whatever the quantization library (cached until the weight changes).
        """
        if self.quantized:
            return self._memo("dequantized", None, [self.base.weight], self._applied_weight)
        return self.base.weight.T if self.transposed else self.base.weight

    def _applied_weight(self) -> torch.Tensor:
        eye = torch.eye(self.d_in, device=self.base.weight.device)
        out = self.base(eye).float()
        if self.base.bias is not None:
            out = out - self.base.bias.float()
        return out.T.contiguous()

    def multiplicative_delta(self, indices) -> torch.Tensor:
        """``W (.) (prod_i (1 + E_i) - 1)`` ``(d_out, d_in)`` over adapters ``indices`` (OLieRA)."""
        factor = None
        for i in indices:
            f = self.adapters[i]
            e = olie_factor(f.factor_b(), f.factor_a(), self.scaling, self.taylor_order)
            factor = 1.0 + e if factor is None else factor * (1.0 + e)
        return self.weight_out_in() * (factor - 1.0)

    def stacked_factors(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` of adapters ``indices`` as one LoRA: ``(R, d_in)`` and ``(d_out, R)``."""
        chosen = [self.adapters[i] for i in indices]
        return torch.cat([f.factor_a() for f in chosen], dim=0), torch.cat([f.factor_b() for f in chosen], dim=1)

    def routed_delta(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The update for a mixed batch: input ``b`` gets the adapters ``mask[b]`` ``(batch, n_adapters)`` selects.

        Additive LoRA: one pass, ``s * ((x A_all^T) * m) B_all^T`` with ``m`` the mask
        repeated over each adapter's rank. Multiplicative (olie): one weight per distinct
        adapter set, applied to the inputs that use it.
        """
        if mask.shape[-1] != len(self.adapters):
            raise ValueError(f"adapter mask has {mask.shape[-1]} columns for {len(self.adapters)} adapters")
        if self.taylor_order is None:
            a, b, ranks = self.all_factors()
            rank_mask = mask.to(a.dtype).repeat_interleave(ranks, dim=1)  # (batch, R)
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (rank_mask.shape[1],)
            return (self.scaling * (((x.to(a.dtype) @ a.T) * rank_mask.view(shape)) @ b.T)).to(x.dtype)
        mask = mask.to(x.dtype)
        out = torch.zeros(*x.shape[:-1], self.d_out, dtype=x.dtype, device=x.device)
        for pattern in torch.unique(mask, dim=0):
            rows = (mask == pattern).all(dim=1)
            indices = [i for i, on in enumerate(pattern.tolist()) if on]
            if indices:
                out[rows] = x[rows] @ self.multiplicative_delta(indices).T
        return out

    def _frozen(self, index: int) -> bool:
        return not any(p.requires_grad for p in self.adapters[index].parameters())

    def _memo(self, slot: str, key, tensors: list[torch.Tensor], build):
        """``build()``, cached in ``slot`` until ``key`` or any of ``tensors`` changes.

        The cache holds the tensors it was built from (identity, not address: a freed
        tensor's id can be reused) and their in-place version counters, so a replaced or
        edited factor or base weight is never served stale. An entry is one tuple,
        replaced whole: a concurrent reader sees the old entry or the new one.
        """
        versions = [t._version for t in tensors]
        cached = self._cache.get(slot)
        if (cached is None or cached[0] != key or len(cached[1]) != len(tensors)
                or any(a is not b for a, b in zip(cached[1], tensors)) or cached[2] != versions):
            with torch.no_grad():
                cached = (key, tensors, versions, build())
            self._cache[slot] = cached
        return cached[3]

    def merged_weight(self, indices: list[int]) -> torch.Tensor:
        """``W + s B A`` ``(d_out, d_in)`` over the frozen adapters ``indices``, cached (``_memo``)."""
        def build():
            a, b = self.stacked_factors(indices)
            return self.weight_out_in() + self.scaling * (b @ a).to(self.base.weight.dtype)

        tensors = [self.base.weight] + [p for i in indices for p in self.adapters[i].parameters()]
        return self._memo("merged", list(indices), tensors, build)

    def all_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A_all (R, d_in), B_all (d_out, R), ranks (n_adapters,))`` of every adapter, cached while frozen."""
        def build():
            a, b = self.stacked_factors(range(len(self.adapters)))
            return a, b, torch.tensor([f.factor_a().shape[0] for f in self.adapters], device=a.device)

        if any(not self._frozen(i) for i in range(len(self.adapters))):  # a trainable factor: no cache, keep grads
            return build()
        tensors = [p for f in self.adapters for p in f.parameters()]
        return self._memo("all", len(self.adapters), tensors, build)

    def _additive(self, x: torch.Tensor, indices: tuple[int, ...]) -> torch.Tensor:
        """``base(x) + s x A^T B^T`` over adapters ``indices``; while training, frozen ones folded into the weight.

        Folding makes every frozen adapter free at forward time (one matmul, as if no
        adapter were there), so a task late in a stream trains as fast as the first.
        Only in float32: a bf16/fp16 weight would round the small update away. Only
        while gradients are on: ``x (W + s B A)^T`` and ``x W^T + s (x A^T) B^T`` round
        differently, by up to 2.5e-5 on MiniLM's last hidden states, and answering keeps
        the factor form so that clora and PEFT give the same outputs within 1e-5.
        """
        fold = self.merge_frozen and torch.is_grad_enabled()
        frozen = [i for i in indices if self._frozen(i)] if fold else []
        if frozen and self.base.weight.dtype == torch.float32:
            y = torch.nn.functional.linear(x, self.merged_weight(frozen), self.base.bias)
            live = [i for i in indices if i not in frozen]
        else:
            y, live = self.base(x), list(indices)
        if not live:
            return y
        a, b = self.stacked_factors(live)
        return y + self.scaling * ((x.to(a.dtype) @ a.T) @ b.T).to(y.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        selection = current_selection()
        if selection.mask is not None:
            y = self.base(x)
            return y + self.routed_delta(x.to(y.dtype), selection.mask.to(x.device))
        if self.taylor_order is not None and selection.indices:
            y = self.base(x)
            delta = self.multiplicative_delta(selection.indices)
            return y + (x.to(delta.dtype) @ delta.T).to(y.dtype)
        return self._additive(x, selection.indices)


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(model: nn.Module, targets: tuple[str, ...], rank: int, scaling: float,
                taylor_order: int | None = None) -> dict[str, LoRALinear]:
    """Wrap every linear layer whose name ends in one of ``targets``; returns them by name.

    ``taylor_order`` makes the layers multiplicative (OLieRA). Freezes all of the model's
    own parameters. Raises ModelError for a target that
    matches nothing, or a rank larger than a matched layer's smaller dimension.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    linear_types = (nn.Linear,) + ((Conv1D,) if Conv1D else ())
    found = {n: m for n, m in model.named_modules() if isinstance(m, linear_types) and _matches(n, targets)}
    for target in targets:
        if not any(_matches(n, (target,)) for n in found):
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear_types)})
            raise ModelError(f"target module {target!r} not found in the model (its linear layers: {', '.join(names)})")
    layers = {}
    for name, module in found.items():
        d_in, d_out = linear_dims(module)
        if rank > min(d_in, d_out):
            raise ModelError(f"rank {rank} is larger than module {name!r} allows (at most {min(d_in, d_out)})")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = LoRALinear(module, scaling, taylor_order)
        setattr(parent, child, layer)
        layers[name] = layer
    return layers

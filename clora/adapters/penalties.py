"""Penalties and update rules of the published baselines, as pure functions on tensors.

Shapes: ``A`` is ``(r, d_in)``, ``B`` is ``(d_out, r)``; a multiplicative update factor ``E``
is ``(d_out, d_in)``, the shape of the weight it rescales.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def olora_penalty(earlier: Sequence[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
    """O-LoRA's orthogonality loss ``sum_i sum_{j,k} |(A_i A_t^T)_{jk}|``.

    Wang et al., "Orthogonal Subspace Learning for Language Model Continual Learning",
    EMNLP 2023 Findings (eq. 7). ``earlier`` are the frozen ``A_i``, ``current`` is ``A_t``.
    """
    total = current.new_zeros(())
    for a_i in earlier:
        total = total + (a_i.to(current.dtype) @ current.T).abs().sum()
    return total


def l2_penalty(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum ||T||_F^2`` over ``tensors`` (O-LoRA's lambda2 term on the new factors)."""
    return sum((t.pow(2).sum() for t in tensors), start=tensors[0].new_zeros(()))


def taylor_expm1(m: torch.Tensor, order: int) -> torch.Tensor:
    """Elementwise ``exp(m) - 1`` by its Taylor series: ``sum_{k=1..order} m^k / k!``.

    Summed from k = 1 so that no ``1 - 1`` cancellation loses bits near zero.
    """
    if order < 1:
        raise ValueError(f"Taylor order must be at least 1, got {order}")
    term, total = torch.ones_like(m), torch.zeros_like(m)
    for k in range(1, order + 1):
        term = term * m / k
        total = total + term
    return total


def taylor_exp(m: torch.Tensor, order: int) -> torch.Tensor:
    """Elementwise ``exp(m)`` by its Taylor series to ``order``: ``sum_{k=0..order} m^k / k!``."""
    return 1.0 + taylor_expm1(m, order)


def olie_factor(b: torch.Tensor, a: torch.Tensor, scaling: float, order: int) -> torch.Tensor:
    """``E = exp(s B A) - 1`` ``(d_out, d_in)`` with the Taylor exp (the *centred* factor).

    OLieRA (arXiv 2509.06100) updates a weight multiplicatively, ``W' = W (.) exp(s B A)``.
    ``exp(0) = 1``, so ``E = 0`` when ``B = 0`` and the update starts as the identity.
    """
    return taylor_expm1(scaling * (b @ a), order)


def olie_penalty(earlier: Sequence[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
    """OLieRA's orthogonality loss ``sum_i ||E_i E_t^T||_F`` on centred factors ``E``.

    The paper's uncentred form uses ``exp(BA)`` itself, which is positive everywhere and
    so can never be orthogonal; centring (``E = exp(BA) - 1``) makes zero attainable.
    The norm is ``sqrt(sum x^2 + 1e-12)`` so its gradient stays finite at ``E_t = 0``.
    """
    total = current.new_zeros(())
    for e_i in earlier:
        total = total + ((e_i.to(current.dtype) @ current.T).pow(2).sum() + 1e-12).sqrt()
    return total


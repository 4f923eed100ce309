"""Scaled projection of earlier tasks' leftover input energy, as pure functions on tensors.

``orth`` reserves, per module, the directions holding ``energy`` of each task's inputs and
keeps every later adapter exactly blind to them. The energy left outside (``1 - energy``)
is spread over the free directions, and a later adapter may read it freely: that is
where sum mode still forgets. Scaled gradient projection (SGP, Saha & Roy, AAAI 2023)
scales an update down in a direction by how much earlier inputs use it rather than
blocking it or not. Here the hard block stays as it is, and inside the free space a new
adapter's ``A = X^T S`` with

    S = P - V diag(a) V^T,   a = min((gamma + 1) s / (gamma s + 1), CAP),   s = sqrt(mu)

where ``P = I - U U^T`` projects onto the free space and ``(mu, V)`` are the eigenpairs of
``P M P``, ``M = sum_i R_i / lambda_i`` the earlier tasks' input second moments, each in
units of its own strongest eigenvalue ``lambda_i``. ``s`` is thus a direction's singular
value relative to the task's largest, and ``a`` is SGP's importance with ``gamma`` its
scale coefficient (``alpha`` in the paper; 0 here means off): a direction as strong as
the task's strongest would be scaled by 1, one a hundredth as strong (in singular
value) by about ``(gamma + 1) / 100``. The leftover directions of real inputs are weak
against the strongest (MiniLM on CL_Benchmark: the weakest reserved eigenvalue is about
0.4% of the strongest, ``s`` about 0.06), so each is scaled a little; in units of the
weakest *reserved* eigenvalue, as first built, most free directions of a fourth task
counted as strong and were scaled by the full 90% (log 15b7361:docs/results.md).
``S U = 0``, so exact orthogonality to the reserved subspace is kept; ``CAP < 1`` leaves
every free direction at least ``1 - CAP`` of its scale, so ``A`` keeps full rank and its
orthogonality stays measurable.
"""

from __future__ import annotations

import torch

from clora.adapters.subspace import project_out

#: the most a free direction is scaled down (a direction scaled to 0 would make ``A`` lose rank)
CAP = 0.9
#: eigen-directions of a task's leftover energy weaker than this (relative to its strongest eigenvalue)
#: are not kept: ``s`` under 1e-4, scaled by under 0.02% at ``gamma`` = 1
FLOOR = 1e-8


def leftover_factor(moments: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``F`` ``(d, m)`` with ``F F^T`` = the free part of ``R / lambda_max(R)``: ``P R P / lambda_max`` (float64).

    ``moments`` is a task's ``R`` ``(d, d)``; ``basis`` the reserved ``U`` after the task
    reserved its own directions; eigen-directions weaker than :data:`FLOOR` are dropped
    (``m`` may be 0).
    """
    d = moments.shape[0]
    r = _symmetric(moments)
    strongest = float(torch.linalg.eigvalsh(r)[-1])
    if strongest <= 0:
        return torch.zeros(d, 0, dtype=torch.float64)
    u = basis.double()
    p = torch.eye(d, dtype=torch.float64) - u @ u.T
    values, vectors = torch.linalg.eigh(_symmetric(p @ r @ p) / strongest)
    keep = values > FLOOR
    return vectors[:, keep] * values[keep].sqrt()


def importance(s: torch.Tensor, gamma: float) -> torch.Tensor:
    """SGP's importance ``(gamma + 1) s / (gamma s + 1)`` of relative singular values ``s`` (Saha & Roy 2023)."""
    return (gamma + 1) * s / (gamma * s + 1)


def attenuation_directions(basis: torch.Tensor, factor: torch.Tensor,
                           gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V (d, m), a (m,))``: the free directions of ``M = F F^T`` and how much each is scaled down.

    ``factor`` ``(d, n)`` holds every earlier task's leftover factor side by side. ``V`` is
    orthonormal and orthogonal to span(U); ``a = min(importance(sqrt(mu), gamma), CAP)`` with
    ``mu`` the eigenvalues of ``P M P``; directions with ``a`` below 1e-6 are dropped.
    """
    d = basis.shape[0]
    if factor.shape[1] == 0 or gamma == 0:
        return torch.zeros(d, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    free_part = project_out(factor.double(), basis.double())  # P F: (d, n)
    q, r = torch.linalg.qr(free_part)  # P M P = Q (R R^T) Q^T
    mu, w = torch.linalg.eigh(_symmetric(r @ r.T))
    scale = importance(mu.clamp_min(0).sqrt(), gamma).clamp(max=CAP)
    keep = scale > 1e-6
    v = project_out(q @ w[:, keep], basis.double())  # exactly free despite rounding in the QR
    return v, scale[keep]


def attenuated_rows(xt: torch.Tensor, basis: torch.Tensor, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``X^T S`` for ``xt`` ``(r, d)``: reserved directions removed, attenuated ones scaled down.

    The result is projected off span(U) twice ("twice is enough", as in ``extend_basis``), so
    rounding in ``V`` cannot leave a component inside the reserved subspace.
    """
    a = xt - ((xt @ v) * scale) @ v.T if v.shape[1] else xt
    if basis.shape[1] == 0:
        return a
    a = a - (a @ basis) @ basis.T
    return a - (a @ basis) @ basis.T


def _symmetric(m: torch.Tensor) -> torch.Tensor:
    m = m.double()
    return (m + m.T) / 2

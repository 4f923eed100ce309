"""Scaled projection of earlier tasks' leftover input energy, as pure functions on tensors.

``orth`` reserves, per module, the directions holding ``energy`` of each task's inputs and
keeps every later adapter exactly blind to them. The energy left outside (``1 - energy``)
is spread over the free directions, and a later adapter may read it freely: that is
where sum mode still forgets. Scaled gradient projection (SGP, Saha & Roy, AAAI 2023)
scales an update down in a direction by how much earlier inputs use it rather than
blocking it or not. Here the hard block stays as it is, and inside the free space a new
adapter's ``A = X^T S`` with

    S = P - V diag(a) V^T,   a = min(gamma * mu, CAP)

where ``P = I - U U^T`` projects onto the free space and ``(mu, V)`` are the eigenpairs of
``P M P``, ``M = sum_i R_i / mu_cut_i`` the earlier tasks' input second moments, each in
units of its own cut (the eigenvalue of ``R_i`` at which the energy threshold was
reached). A free direction as strong in a task's inputs as the weakest one it reserved
is thus scaled by ``1 - min(gamma, CAP)``. ``S U = 0``, so exact orthogonality to the
reserved subspace is kept; ``CAP < 1`` leaves every free direction at least ``1 - CAP``
of its scale, so ``A`` keeps full rank and its orthogonality stays measurable.
"""

from __future__ import annotations

import torch

from clora.adapters.subspace import project_out

#: the most a free direction is scaled down (a direction scaled to 0 would make ``A`` lose rank)
CAP = 0.9
#: eigen-directions of a task's leftover energy weaker than this (in units of its cut) are not kept:
#: they would be scaled by under 0.1% at ``gamma`` = 1
FLOOR = 1e-3


def cut_value(moments: torch.Tensor, energy: float) -> float:
    """The eigenvalue of ``R`` ``(d, d)`` at which its cumulative energy first reaches ``energy``."""
    values = torch.linalg.eigvalsh(_symmetric(moments)).flip(0).clamp_min(0)
    total = values.sum()
    if total <= 0:
        return 0.0
    cumulative = torch.cumsum(values, 0) / total
    index = int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=cumulative.dtype)).item())
    return float(values[min(index, values.numel() - 1)])


def leftover_factor(moments: torch.Tensor, basis: torch.Tensor, energy: float) -> torch.Tensor:
    """``F`` ``(d, m)`` with ``F F^T`` = the free part of ``R / mu_cut``: ``P R P / mu_cut`` (float64).

    ``basis`` is the reserved ``U`` after the task reserved its own directions; eigen-directions
    weaker than :data:`FLOOR` are dropped (``m`` may be 0).
    """
    d = moments.shape[0]
    cut = cut_value(moments, energy)
    if cut <= 0:
        return torch.zeros(d, 0, dtype=torch.float64)
    u = basis.double()
    p = torch.eye(d, dtype=torch.float64) - u @ u.T
    values, vectors = torch.linalg.eigh(_symmetric(p @ moments.double() @ p) / cut)
    keep = values > FLOOR
    return vectors[:, keep] * values[keep].sqrt()


def attenuation_directions(basis: torch.Tensor, factor: torch.Tensor,
                           gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V (d, m), a (m,))``: the free directions of ``M = F F^T`` and how much each is scaled down.

    ``factor`` ``(d, n)`` holds every earlier task's leftover factor side by side. ``V`` is
    orthonormal and orthogonal to span(U); ``a = min(gamma * mu, CAP)`` with ``mu`` the
    eigenvalues of ``P M P``; directions with ``a`` below 1e-6 are dropped.
    """
    d = basis.shape[0]
    if factor.shape[1] == 0 or gamma == 0:
        return torch.zeros(d, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    free_part = project_out(factor.double(), basis.double())  # P F: (d, n)
    q, r = torch.linalg.qr(free_part)  # P M P = Q (R R^T) Q^T
    mu, w = torch.linalg.eigh(_symmetric(r @ r.T))
    scale = (gamma * mu.clamp_min(0)).clamp(max=CAP)
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

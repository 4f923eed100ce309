"""Subspaces of a module's input space, as pure functions on tensors.

A *subspace* is kept as an orthonormal basis ``U`` of shape ``(d_in, k)`` (``k`` may be 0).
Everything here is deterministic linear algebra in float64 where it matters, so that
the orthogonality of ``orth`` adapters holds to rounding error.
"""

from __future__ import annotations

import torch

# Singular values below this (relative to the largest) count as zero when a basis is
# taken of a set of directions: they are rounding noise, not directions.
RANK_TOL = 1e-6


def empty_basis(d_in: int, dtype=torch.float32) -> torch.Tensor:
    """A basis of the zero subspace: shape ``(d_in, 0)``."""
    return torch.zeros(d_in, 0, dtype=dtype)


def orthonormal_basis(directions: torch.Tensor, tol: float = RANK_TOL) -> torch.Tensor:
    """Orthonormal basis of the column space of ``directions`` ``(d_in, m)`` -> ``(d_in, k)``.

    Uses the SVD so rank-deficient inputs (e.g. a LoRA ``A`` with repeated rows) give
    only their true directions.
    """
    if directions.numel() == 0:
        return empty_basis(directions.shape[0], directions.dtype)
    u, s, _ = torch.linalg.svd(directions.double(), full_matrices=False)
    keep = s > tol * s.max().clamp_min(1e-300)
    return u[:, keep].to(directions.dtype)


def project_out(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(I - U U^T) x`` for ``x`` ``(d_in, m)``: remove the part of ``x`` inside span(U)."""
    if basis.shape[1] == 0:
        return x
    return x - basis @ (basis.T @ x)


def extend_basis(basis: torch.Tensor, directions: torch.Tensor, tol: float = RANK_TOL) -> torch.Tensor:
    """Basis of span(U) + span(directions), keeping ``U`` as its first columns.

    ``directions`` is ``(d_in, m)``; the part already inside span(U) is dropped, the rest
    is orthonormalised and appended.
    """
    residual = project_out(directions.double(), basis.double())
    scale = directions.double().norm(dim=0).max().clamp_min(1e-300) if directions.numel() else 1.0
    if residual.numel() == 0 or residual.norm(dim=0).max() <= tol * scale:
        return basis
    # Project twice ("twice is enough", Kahan/Parlett) so rounding cannot leave new
    # columns slightly inside span(U).
    new = orthonormal_basis(project_out(residual, basis.double()), tol)
    new = orthonormal_basis(project_out(new, basis.double()), tol)
    return torch.cat([basis, new.to(basis.dtype)], dim=1)


def complement_dim(basis: torch.Tensor) -> int:
    """Dimension of the orthogonal complement of span(U) in R^{d_in}."""
    return basis.shape[0] - basis.shape[1]


def random_complement_frame(basis: torch.Tensor, rank: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``(d_in, rank)`` matrix with orthonormal columns orthogonal to span(U)."""
    d_in = basis.shape[0]
    if rank > complement_dim(basis):
        raise ValueError(f"rank {rank} exceeds the complement dimension {complement_dim(basis)}")
    gauss = torch.randn(d_in, rank, generator=generator, dtype=torch.float64)
    frame = project_out(project_out(gauss, basis.double()), basis.double())
    q, r = torch.linalg.qr(frame)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique QR: fixed sign per column
    return q.to(basis.dtype)


def principal_cosines(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the row spaces of ``a1`` ``(r1, d)`` and ``a2`` ``(r2, d)``.

    Returned in decreasing order; the first is 1 if the row spaces share a direction
    and 0 if they are orthogonal (Björck & Golub 1973: singular values of Q1^T Q2).
    """
    q1 = orthonormal_basis(a1.T.double())
    q2 = orthonormal_basis(a2.T.double())
    if q1.shape[1] == 0 or q2.shape[1] == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.linalg.svdvals(q1.T @ q2).clamp(0.0, 1.0)


def max_overlap(factors: list[torch.Tensor]) -> float | None:
    """Largest principal cosine over all pairs of row spaces in ``factors`` (``A_i``: ``(r, d)``).

    ``None`` when fewer than two factors are given (no pair to compare).
    """
    if len(factors) < 2:
        return None
    best = 0.0
    for i in range(len(factors)):
        for j in range(i + 1, len(factors)):
            cos = principal_cosines(factors[i], factors[j])
            if cos.numel():
                best = max(best, float(cos[0]))
    return best


def energy_directions(covariance: torch.Tensor, basis: torch.Tensor, energy: float) -> torch.Tensor:
    """New directions to reserve so that span(U) captures ``energy`` of the activations.

    ``covariance`` is ``R = sum_n x_n x_n^T`` ``(d_in, d_in)`` over a task's layer inputs.
    Following GPM (Saha et al., ICLR 2021): the energy already captured by U is
    ``tr(U^T R U)``; the eigenvectors of the residual ``(I-UU^T) R (I-UU^T)`` are added in
    order of eigenvalue until captured / ``tr(R)`` reaches ``energy``. Returns ``(d_in, m)``.
    """
    r = covariance.double()
    r = (r + r.T) / 2
    total = torch.trace(r)
    if total <= 0:
        return empty_basis(r.shape[0], covariance.dtype)
    u = basis.double()
    captured = torch.trace(u.T @ r @ u) if u.shape[1] else torch.zeros((), dtype=torch.float64)
    if captured / total >= energy:
        return empty_basis(r.shape[0], covariance.dtype)
    p = torch.eye(r.shape[0], dtype=torch.float64) - u @ u.T
    values, vectors = torch.linalg.eigh(p @ r @ p)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    needed = (energy * total - captured).item()
    cumulative = torch.cumsum(values, 0)
    count = int(torch.searchsorted(cumulative, torch.tensor(needed, dtype=torch.float64)).item()) + 1
    count = min(count, int((values > RANK_TOL * values[0].clamp_min(1e-300)).sum()))
    return vectors[:, :count].to(covariance.dtype)


def complement_basis(basis: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``(d_in, d_in - k)`` of the orthogonal complement of span(U) (float64)."""
    d_in, k = basis.shape
    if k == 0:
        return torch.eye(d_in, dtype=torch.float64)
    u, _, _ = torch.linalg.svd(basis.double(), full_matrices=True)
    return u[:, k:]


def gradient_frame(gradient: torch.Tensor, basis: torch.Tensor, rank: int) -> torch.Tensor:
    """The ``(d_in, rank)`` orthonormal frame in the complement of span(U) along which the loss falls fastest.

    ``gradient`` is ``dL/dW`` ``(d_out, d_in)``. With ``C`` a basis of the complement, the
    top ``rank`` right singular vectors ``v`` of ``G C`` give ``X = C v``: an update
    ``B X^T`` with ``B`` starting at zero then has the largest gradient a rank-``rank``
    adapter confined to the complement can have (the frame start of InfLoRA, Liang & Li,
    CVPR 2024, and LoRA-GA, Wang et al. 2024, restricted to the free directions).
    """
    free = complement_basis(basis)
    if rank > free.shape[1]:
        raise ValueError(f"rank {rank} exceeds the complement dimension {free.shape[1]}")
    _, _, vh = torch.linalg.svd(gradient.double() @ free, full_matrices=rank > min(gradient.shape[0], free.shape[1]))
    frame = free @ vh[:rank].T
    frame = project_out(frame, basis.double())  # exact complement despite rounding in the SVD
    q, r = torch.linalg.qr(frame)
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).to(basis.dtype)

"""The Stiefel manifold the ``orth`` frames live on, with a Cayley step costing O(d r^2).

geoopt's ``CanonicalStiefel`` takes a Cayley (Lie-group) step by solving a dense
``(d, d)`` system: ``Y = (I - A/2)^{-1} (I + A/2) X`` with the skew matrix
``A = U X^T - X U^T`` for a frame ``X`` ``(d, r)`` and direction ``U`` ``(d, r)``. ``A`` has
rank at most ``2r``: ``A = P Q^T`` with ``P = [U, X]`` and ``Q = [X, -U]`` ``(d, 2r)``, so by
the Sherman-Morrison-Woodbury identity
``(I - P Q^T / 2)^{-1} = I + P (2 I - Q^T P)^{-1} Q^T``, a ``(2r, 2r)`` solve (Wen & Yin,
"A feasible method for optimization with orthogonality constraints", Math. Prog. 2013,
Lemma 4). Same step, same transport of Adam's moments; for MiniLM (d = 384, r = 8) this
is about 1000x fewer flops per module and step than the dense solve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import geoopt
import torch


class LowRankCayleyStiefel(geoopt.CanonicalStiefel):
    """geoopt's canonical-metric Stiefel manifold with the Woodbury form of its Cayley step."""

    def _transp_follow_one(self, x: torch.Tensor, v: torch.Tensor, *, u: torch.Tensor) -> torch.Tensor:
        """``(I - A/2)^{-1} (I + A/2) v`` for ``A = u x^T - x u^T``; ``x``, ``u`` ``(..., d, r)``, ``v`` ``(..., d, m)``."""
        p = torch.cat((u, x), dim=-1)  # (..., d, 2r)
        q = torch.cat((x, -u), dim=-1)  # (..., d, 2r)
        rhs = v + 0.5 * p @ (q.transpose(-1, -2) @ v)  # (I + A/2) v
        small = 2.0 * torch.eye(p.shape[-1], dtype=p.dtype, device=p.device) - q.transpose(-1, -2) @ p
        return rhs + p @ torch.linalg.solve(small, q.transpose(-1, -2) @ rhs)


def stiefel_manifold(retraction: str) -> geoopt.Manifold:
    """The Stiefel manifold with a Cayley (canonical metric, a Lie-group step) or QR retraction."""
    return LowRankCayleyStiefel() if retraction == "cayley" else geoopt.EuclideanStiefel()


def param_groups(params: Sequence[torch.nn.Parameter], lr: float, frame_lr: float | None = None) -> list[dict]:
    """Optimiser groups: Euclidean parameters at ``lr``; each manifold parameter at
    ``frame_lr * sqrt(numel)`` (``frame_lr`` ``None``: ``lr``). Each group keeps its starting rate as
    ``initial_lr`` (as torch's rate schedulers do), which :func:`schedule_frames` scales.

    geoopt's Riemannian Adam keeps one second-moment scalar per manifold point
    (``component_inner``), so a Stiefel frame's whole step has Frobenius norm about
    ``lr``, while element-wise Adam moves a matrix of ``n`` entries by about
    ``lr * sqrt(n)``. Scaling by ``sqrt(n)`` gives the frame the same step size as the
    Euclidean factors; without it the frame barely leaves its random start.
    """
    frame_lr = lr if frame_lr is None else frame_lr
    groups = [{"params": [p for p in params if not isinstance(p, geoopt.ManifoldParameter)], "lr": lr}]
    for p in params:
        if isinstance(p, geoopt.ManifoldParameter):
            groups.append({"params": [p], "lr": frame_lr * math.sqrt(p.numel())})
    return [{**g, "initial_lr": g["lr"]} for g in groups if g["params"]]


def schedule_frames(optimizer: torch.optim.Optimizer, schedule: str, done: int, total: int) -> None:
    """Set each Stiefel frame's rate for the next step: ``linear`` takes it from its ``initial_lr`` to 0 at step
    ``total`` (``constant``: unchanged). Euclidean groups (B) keep their rate.

    Why: at a constant rate the frame keeps turning to the end of a task and B, fitted to
    where it was, keeps chasing it (log 15b7361:docs/results.md, "Plasticity"); a frame that settles
    lets B fit its final span.
    """
    if schedule == "constant":
        return
    left = max(0.0, 1.0 - done / max(total, 1))
    for group in optimizer.param_groups:
        if any(isinstance(p, geoopt.ManifoldParameter) for p in group["params"]):
            group["lr"] = group["initial_lr"] * left

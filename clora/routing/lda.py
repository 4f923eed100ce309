"""The learned trigger: linear discriminant analysis on frozen base-model features.

Each task keeps sufficient statistics of its training inputs' pooled features ``x``
``(d,)``: the count ``n_t``, the mean ``mu_t`` and the scatter
``S_t = sum (x - mu_t)(x - mu_t)^T``; no raw example is stored and a new task only adds
its own statistics. With the pooled within-task covariance
``Sigma = sum_t S_t / (N - T)``, shrunk towards ``(tr Sigma / d) I`` (Ledoit & Wolf 2004),
the posterior of task ``t`` for equal priors is ``softmax_t(-D_t^2 / 2)`` with
``D_t^2 = (x - mu_t)^T Sigma^-1 (x - mu_t)`` (Fisher 1936; Mahalanobis 1936).

An input far from every task (``D^2`` of its best task more than ``margin`` times that
task's mean training ``D^2``, which is ``tr(Sigma^-1 S_t) / n_t``) is out of distribution:
its confidence is damped by ``exp(-4 (ratio - 1))``, so that it falls back rather than being forced on a task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TaskStats:
    """Sufficient statistics of one task's features: ``count``, ``mean`` (d,), ``scatter`` (d, d)."""

    count: float
    mean: torch.Tensor
    scatter: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> "TaskStats":
        """Statistics of ``features`` ``(n, d)``."""
        x = features.double()
        mean = x.mean(0)
        centred = x - mean
        return cls(float(x.shape[0]), mean, centred.T @ centred)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"count": torch.tensor([self.count], dtype=torch.float64), "mean": self.mean, "scatter": self.scatter}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "TaskStats":
        return cls(float(tensors["count"][0]), tensors["mean"].double(), tensors["scatter"].double())


def shared_precision(stats: list[TaskStats], shrinkage: float = 0.1) -> torch.Tensor:
    """``Sigma^-1`` ``(d, d)`` of the pooled, shrunk within-task covariance."""
    total = sum(s.count for s in stats)
    scatter = sum(s.scatter for s in stats)
    cov = scatter / max(total - len(stats), 1.0)
    d = cov.shape[0]
    target = torch.eye(d, dtype=cov.dtype) * (torch.trace(cov) / d).clamp_min(1e-12)
    return torch.linalg.inv((1 - shrinkage) * cov + shrinkage * target)


def squared_distances(x: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``D^2`` ``(n, T)`` of inputs ``x`` ``(n, d)`` to task means ``(T, d)``."""
    diff = x.double().unsqueeze(1) - means.unsqueeze(0)  # (n, T, d)
    return torch.einsum("ntd,de,nte->nt", diff, precision, diff)


def typical_distances(stats: list[TaskStats], precision: torch.Tensor) -> torch.Tensor:
    """``(T,)``: each task's mean training ``D^2`` to its own mean, ``tr(Sigma^-1 S_t) / n_t``."""
    return torch.stack([torch.trace(precision @ s.scatter) / s.count for s in stats])


def posterior_and_confidence(d2: torch.Tensor, typical: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Best task ``(n,)`` and its confidence ``(n,)``: posterior, damped for out-of-distribution inputs."""
    posterior = torch.softmax(-0.5 * d2, dim=1)
    best = posterior.argmax(dim=1)
    ratio = d2.gather(1, best[:, None]).squeeze(1) / (margin * typical[best])
    damping = torch.exp(-4.0 * (ratio - 1.0).clamp_min(0.0))  # 1 inside the margin, e^-1 at 1.25x it
    return best, posterior.max(dim=1).values * damping

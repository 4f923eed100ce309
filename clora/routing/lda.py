"""The learned trigger: linear discriminant analysis on frozen base-model features.

Each task keeps sufficient statistics of its training inputs' pooled features ``x``
``(d,)``: the count ``n_t``, the mean ``mu_t`` and the scatter
``S_t = sum (x - mu_t)(x - mu_t)^T``; no raw example is stored and a new task only adds
its own statistics. With the pooled within-task covariance
``Sigma = sum_t S_t / (N - T)``, shrunk towards ``(tr Sigma / d) I`` (Ledoit & Wolf 2004),
the posterior of task ``t`` for equal priors is ``softmax_t(-D_t^2 / 2)`` with
``D_t^2 = (x - mu_t)^T Sigma^-1 (x - mu_t)`` (Fisher 1936; Mahalanobis 1936).

An input far from every task (``D^2`` of its best task more than ``margin`` times the
``D^2`` a fresh input of that task has on average: the mean training ``D^2``,
``tr(Sigma^-1 S_t) / n_t``, times the task's held-out ratio of ``clora.routing.calibration``)
is out of distribution: its confidence is damped by ``exp(-4 (ratio - 1))``, so that it
falls back rather than being forced on a task.
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
    #: held-out over training mean D^2, measured when the task was learnt (clora.routing.calibration);
    #: 1.0 for statistics made before calibration existed
    heldout: float = 1.0
    #: the 95th percentile of the held-out D^2 over their mean: how far out a task's own fresh
    #: inputs go (1.0 before calibration existed)
    spread: float = 1.0

    @classmethod
    def of(cls, features: torch.Tensor) -> "TaskStats":
        """Statistics of ``features`` ``(n, d)``."""
        x = features.double()
        mean = x.mean(0)
        centred = x - mean
        return cls(float(x.shape[0]), mean, centred.T @ centred)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"count": torch.tensor([self.count], dtype=torch.float64), "mean": self.mean, "scatter": self.scatter,
                "heldout": torch.tensor([self.heldout], dtype=torch.float64),
                "spread": torch.tensor([self.spread], dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "TaskStats":
        heldout = float(tensors["heldout"][0]) if "heldout" in tensors else 1.0
        spread = float(tensors["spread"][0]) if "spread" in tensors else 1.0
        return cls(float(tensors["count"][0]), tensors["mean"].double(), tensors["scatter"].double(), heldout, spread)


def shared_precision(stats: list[TaskStats], shrinkage: float = 0.1) -> torch.Tensor:
    """``Sigma^-1`` ``(d, d)`` of the pooled, shrunk within-task covariance."""
    total = sum(s.count for s in stats)
    scatter = sum(s.scatter for s in stats)
    cov = scatter / max(total - len(stats), 1.0)
    d = cov.shape[0]
    target = torch.eye(d, dtype=cov.dtype) * (torch.trace(cov) / d).clamp_min(1e-12)
    return torch.linalg.inv((1 - shrinkage) * cov + shrinkage * target)


def whitening(precision: torch.Tensor) -> torch.Tensor:
    """``L`` ``(d, d)`` with ``precision = L L^T``: in the space ``x @ L`` the euclidean distance is the
    router's Mahalanobis distance ``D``, so any off-the-shelf clustering sees what the router sees."""
    return torch.linalg.cholesky(precision)


def sample_like(stats: TaskStats, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, d)`` draws from ``N(mean, scatter / count)``: stand-ins for a task's inputs when only its
    statistics are stored (a tiny ridge keeps a rank-deficient scatter factorable)."""
    cov = stats.scatter / max(stats.count, 1.0)
    ridge = 1e-6 * (torch.trace(cov) / cov.shape[0]).clamp_min(1e-12)
    factor = torch.linalg.cholesky(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
    return stats.mean + torch.randn(n, cov.shape[0], generator=generator, dtype=cov.dtype) @ factor.T


def squared_distances(x: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``D^2`` ``(n, T)`` of inputs ``x`` ``(n, d)`` to task means ``(T, d)``."""
    diff = x.double().unsqueeze(1) - means.unsqueeze(0)  # (n, T, d)
    return torch.einsum("ntd,de,nte->nt", diff, precision, diff)


def typical_distances(stats: list[TaskStats], precision: torch.Tensor) -> torch.Tensor:
    """``(T,)``: each task's expected ``D^2`` for a fresh input of it: the mean training ``D^2``,
    ``tr(Sigma^-1 S_t) / n_t``, times the task's held-out ratio (``clora.routing.calibration``)."""
    return torch.stack([torch.trace(precision @ s.scatter) / s.count * s.heldout for s in stats])


TEMPERATURE = 0.02


def posterior_and_confidence(d2: torch.Tensor, typical: torch.Tensor, margin: float,
                             temperature: float = TEMPERATURE,
                             spread: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Best task ``(n,)`` (least ``D^2``: LDA's choice) and its confidence ``(n,)``.

    The confidence is the best task's tempered posterior ``softmax(-D^2 / (2 T))`` with
    ``T = temperature * typical[best]``, damped for out-of-distribution inputs. The plain
    Gaussian posterior (``T = 1``) trusts the estimated covariance and is far too sure: on
    the shared CL tasks the inputs it misroutes had a median posterior of 0.97, their
    ``D^2`` only 2% of a typical distance closer to the wrong task. Tempering (temperature
    scaling, Guo et al. 2017) measures that gap against the task's own spread: a gap of
    ``typical * temperature * 2 ln 4`` (5.5% of it) gives a two-way confidence of 0.8.

    An input is out of distribution when its ``D^2`` exceeds ``margin`` times the
    distance that 95% of the task's held-out inputs stay within (``typical * spread``,
    ``spread`` ``(T,)``; 1 when not given).
    """
    best = d2.argmin(dim=1)
    scale = 2.0 * temperature * typical[best].clamp_min(1e-12)
    posterior = torch.softmax(-d2 / scale[:, None], dim=1)
    reach = typical * (spread if spread is not None else 1.0)
    ratio = d2.gather(1, best[:, None]).squeeze(1) / (margin * reach[best])
    damping = torch.exp(-4.0 * (ratio - 1.0).clamp_min(0.0))  # 1 inside the margin, e^-1 at 1.25x it
    return best, posterior.gather(1, best[:, None]).squeeze(1) * damping

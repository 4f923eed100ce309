"""The router: which task's snapshot an input runs in, with a confidence, and why.

Explicit triggers decide first (confidence 1). Otherwise the learned LDA trigger picks
the most probable task; when its confidence is below ``threshold`` the input falls
back to ``fallback``: ``sum`` (every adapter, the task-agnostic model) or ``base`` (no
adapter at all). See ``docs/routing.md`` for how to choose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from clora.errors import ConfigError
from clora.routing.lda import (TaskStats, posterior_and_confidence, sample_like, shared_precision, squared_distances,
                               typical_distances, whitening)
from clora.routing.triggers import TriggerSet, explicit_task

FALLBACKS = ("sum", "base")
KNOBS = ("threshold", "margin", "shrinkage", "fallback")  # what a library may store for inference


@dataclass(frozen=True)
class Route:
    """``task`` is ``None`` for a fallback; ``source`` is trigger, learned, fallback or given.

    ``guess`` is the most likely task even when the router is unsure: a fallback input is
    still answered in that task's label set (its adapters come from the fallback).
    """

    task: str | None
    confidence: float
    source: str
    guess: str | None = None


@dataclass
class RouterConfig:
    threshold: float = 0.8
    margin: float = 1.1
    shrinkage: float = 0.1
    fallback: str = "sum"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"router threshold must be in [0, 1], got {self.threshold!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin > 0):
            # a NaN would be stored and then refused by every reader of the version (bricking it)
            raise ConfigError(f"router margin must be a positive finite number, got {self.margin!r}")
        if not 0.0 <= self.shrinkage < 1.0:
            raise ConfigError(f"router shrinkage must be in [0, 1), got {self.shrinkage!r}")
        if self.fallback not in FALLBACKS:
            raise ConfigError(f"router fallback must be one of {', '.join(FALLBACKS)}, got {self.fallback!r}")

    @classmethod
    def of_library(cls, stored: dict | None, **overrides) -> "RouterConfig":
        """The settings a library stores (its manifest's ``router``), each replaced by an override not None."""
        given = {k: v for k, v in (stored or {}).items() if k in KNOBS}
        return cls(**{**given, **{k: v for k, v in overrides.items() if v is not None}})


#: the key of ``snapshots`` (never a task's name) under which the adapters a ``sum`` fallback adds are
#: given, where they are not all of them (orth's private adapters act only in their own task's snapshot)
SUMMED = "<summed>"


def adapter_mask(route: Route, n_adapters: int, snapshots: dict[str, list[int]], fallback: str) -> torch.Tensor:
    """``(n_adapters,)`` 0/1: the routed task's snapshot, or for a fallback the summed adapters
    (``snapshots[SUMMED]``, by default every one) or none."""
    mask = torch.zeros(n_adapters)
    if route.task is not None:
        mask[snapshots[route.task]] = 1.0
    elif fallback == "sum":
        if SUMMED in snapshots:
            mask[snapshots[SUMMED]] = 1.0
        else:
            mask[:] = 1.0
    return mask


class Router:
    """Routes over ``names`` using their feature statistics and triggers."""

    def __init__(self, names: list[str], stats: list[TaskStats | None], triggers: list[dict | None],
                 config: RouterConfig | None = None):
        self.config = config or RouterConfig()
        # a library on disk is read leniently: a pathological regex there is cut off per search, not fatal
        self.trigger_sets = [TriggerSet.compile(n, t, strict=False) for n, t in zip(names, triggers)]
        learned = [(n, s) for n, s in zip(names, stats) if s is not None]
        self.learned_names = [n for n, _ in learned]
        if learned:
            kept = [s for _, s in learned]
            self.stats = kept
            self.means = torch.stack([s.mean for s in kept])
            self.precision = shared_precision(kept, self.config.shrinkage)
            self.typical = typical_distances(kept, self.precision)
            self.spread = torch.tensor([s.spread for s in kept], dtype=self.typical.dtype)

    def learned(self, features: torch.Tensor) -> list[Route]:
        """LDA routes for ``features`` ``(n, d)`` (fallback below the threshold)."""
        if not self.learned_names:
            return [Route(None, 0.0, "fallback") for _ in range(features.shape[0])]
        d2 = squared_distances(features, self.means, self.precision)
        best, confidence = posterior_and_confidence(d2, self.typical, self.config.margin, spread=self.spread)
        routes = []
        for b, c in zip(best.tolist(), confidence.tolist()):
            c = c if math.isfinite(c) else 0.0  # broken statistics (NaN) fall back, never a NaN confidence
            ok = c >= self.config.threshold
            name = self.learned_names[b]
            routes.append(Route(name if ok else None, c, "learned" if ok else "fallback", guess=name))
        return routes

    def clustering_space(self, features: torch.Tensor, per_task: int = 50, seed: int = 0):
        """``(z, reference)``: ``features`` ``(n, d)`` whitened by the shared precision (euclidean there is
        the router's ``D``) and ``per_task`` whitened draws from each learnt task's statistics
        ``(T * per_task, d)``, so that clustering sees the known tasks beside the unknown inputs."""
        if not self.learned_names:
            return features.double(), features.new_zeros((0, features.shape[1]), dtype=torch.float64)
        factor = whitening(self.precision)
        generator = torch.Generator().manual_seed(seed)
        reference = torch.cat([sample_like(s, per_task, generator) for s in self.stats])
        return features.double() @ factor, reference @ factor

    def explicit(self, texts: Sequence[str]) -> list[str | None]:
        """The task each text's explicit triggers name, or None (searches cut off at their time budget)."""
        return [explicit_task(text, self.trigger_sets) for text in texts]

    def route(self, texts: Sequence[str], features: Callable[[list[str]], torch.Tensor],
              explicit: Sequence[str | None] | None = None) -> list[Route]:
        """A route per text; ``features(texts)`` is called only for texts no trigger claims.

        ``explicit``: the triggers' verdicts when they were already searched (``Router.explicit``),
        e.g. by a server while another batch was being answered.
        """
        explicit = self.explicit(texts) if explicit is None else explicit
        routes: list[Route | None] = [Route(task, 1.0, "trigger", guess=task) if task else None for task in explicit]
        rest = [i for i, r in enumerate(routes) if r is None]
        if rest:
            for i, r in zip(rest, self.learned(features([texts[i] for i in rest]))):
                routes[i] = r
        return routes

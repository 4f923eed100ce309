"""Routed evaluation: each test input runs in the snapshot of the task the router picks.

Used by ``clora run`` for the ``routed`` mode. The router after task ``j`` knows tasks
``1..j``. An input routed to its own task ``i`` runs in snapshot ``i`` exactly as in
the oracle evaluation, so its result is taken from there; every other input (routed
elsewhere, or a fallback) is answered in one mixed-task forward pass per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clora.config import RunConfig
from clora.data.batches import batches
from clora.data.task import Task
from clora.families import Family
from clora.routing.calibration import calibrate_all, calibrated_stats
from clora.evaluation.text_metrics import example_score
from clora.routing.lda import TaskStats
from clora.routing.shares import routing_shares
from clora.routing.router import Route, Router, RouterConfig, adapter_mask


def task_stats(family: Family, task: Task, earlier: list[TaskStats], shrinkage: float) -> TaskStats:
    """The learned trigger's statistics of ``task``'s training inputs, calibrated on held-out folds of them
    against the ``earlier`` tasks' statistics (``clora.routing.calibration``)."""
    return calibrated_stats(family.router_features([ex.text for ex in task.train]), earlier, shrinkage)


@torch.no_grad()
def routed_answers(family: Family, n_adapters: int, tasks: dict[str, Task], texts: Sequence[str],
                   routes: list[Route], snapshots: dict[str, list[int]], fallback: str, config: RunConfig,
                   width: int | None = None) -> list[str]:
    """The label each input gets when it is answered as its route says (mixed-task batches).

    The routes know ``n_adapters`` adapters; ``width`` (the model's adapter count, when it holds
    more) pads each mask with zeros, so that adapters the router does not know stay off.
    """
    answers = [""] * len(texts)
    n = n_adapters
    pad = torch.zeros(max(0, (width or n) - n))
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for chunk in batches(by_length, config.eval_batch_size):
        chunk_tasks = [tasks[routes[i].task or routes[i].guess] for i in chunk]
        masks = torch.stack([torch.cat([adapter_mask(routes[i], n, snapshots, fallback), pad])
                             for i in chunk]).to(family.device)
        predicted = family.predict_mixed(chunk_tasks, [texts[i] for i in chunk], masks)
        for i, p in zip(chunk, predicted):
            answers[i] = p
    return answers


def routed_scores(family: Family, router: Router, tasks: dict[str, Task], scored: Sequence[Task],
                  snapshots: dict[str, list[int]], n_adapters: int, width: int, config: RunConfig) -> dict[str, float]:
    """The routed score of each task in ``scored`` (its test inputs routed by ``router`` over ``tasks``, each
    answered in the snapshot of the task it is routed to: what ``predict`` and ``serve`` answer)."""
    scores = {}
    for task in scored:
        texts = [ex.text for ex in task.test]
        routes = router.route(texts, family.router_features)
        answers = routed_answers(family, n_adapters, tasks, texts, routes, snapshots, router.config.fallback, config,
                                 width=width)
        flags = [example_score(task, answer, ex.target) for answer, ex in zip(answers, task.test)]
        scores[task.name] = sum(flags) / max(len(flags), 1)
    return scores


class RoutedRun:
    """Incremental routed evaluation alongside a continual run."""

    def __init__(self, family: Family, n_adapters, config: RunConfig, tasks: list[Task],
                 router_config: RouterConfig | None = None):
        """``n_adapters()``: how many adapters the model holds now (it grows with the stream)."""
        self.family, self.n_adapters, self.config, self.tasks = family, n_adapters, config, tasks
        self.router_config = router_config or RouterConfig()
        self.stats: list[TaskStats] = []  # every learnt task, calibrated against all the others
        self._train_features: list[torch.Tensor] = []
        self.own_flags: dict[int, list[bool]] = {}  # task i in snapshot i (the oracle diagonal)
        self._features: dict[int, torch.Tensor] = {}
        self.last_routes: dict[int, list[Route]] = {}

    def learned(self, j: int, diagonal_flags: list[float]) -> None:
        """Task ``j`` has been trained: add its statistics and keep its oracle results.

        Every task's held-out calibration is measured again against all the tasks learnt so
        far: a task calibrated alone, with the covariance of its own few inputs, would keep
        a ratio (40 for 30 inputs in 384 dimensions) that the shared covariance of later
        tasks no longer warrants, and inputs of unseen domains would pass its test.
        """
        self._train_features.append(self.family.router_features([ex.text for ex in self.tasks[j].train]))
        self.stats = calibrate_all(self._train_features, self.router_config.shrinkage)
        self.own_flags[j] = diagonal_flags

    def _test_features(self, i: int) -> torch.Tensor:
        if i not in self._features:
            self._features[i] = self.family.router_features([ex.text for ex in self.tasks[i].test])
        return self._features[i]

    def row(self, j: int, snapshots: dict[str, list[int]]) -> list[float]:
        """Routed score (accuracy or the task's metric) of tasks ``0..j`` after task ``j`` (router over them);
        ``None`` for the tasks ahead."""
        seen = self.tasks[:j + 1]
        router = Router([t.name for t in seen], self.stats[:j + 1], [t.triggers for t in seen], self.router_config)
        by_name = {t.name: t for t in seen}
        row = []
        for i, task in enumerate(self.tasks):
            if i > j:  # routed FWT is not defined (docs/report-format.md): tasks ahead are not evaluated
                row.append(None)
                continue
            texts = [ex.text for ex in task.test]
            features = self._test_features(i)
            index = {text: k for k, text in enumerate(texts)}
            routes = router.route(texts, lambda ts: features[[index[t] for t in ts]])
            self.last_routes[i] = routes
            flags = [0.0] * len(texts)
            rest = []
            for k, route in enumerate(routes):
                if route.task == task.name and i in self.own_flags:
                    flags[k] = self.own_flags[i][k]
                else:
                    rest.append(k)
            if rest:
                answers = routed_answers(self.family, self.n_adapters(), by_name, [texts[k] for k in rest],
                                         [routes[k] for k in rest], snapshots, self.router_config.fallback, self.config)
                for k, answer in zip(rest, answers):
                    flags[k] = example_score(task, answer, task.test[k].target)
            row.append(sum(flags) / len(flags))
        return row

    def routing_summary(self) -> dict:
        """Routing accuracy and confusion (true task x routed task or 'fallback') at the last row."""
        names = [t.name for t in self.tasks]
        confusion = {n: {m: 0 for m in names + ["fallback"]} for n in names}
        expected, routes = [], []
        for i, task_routes in self.last_routes.items():
            for route in task_routes:
                confusion[names[i]][route.task or "fallback"] += 1
                expected.append(names[i])
                routes.append(route)
        shares = routing_shares(routes, expected)
        total = max(shares.total, 1)
        return {"routing_accuracy": shares.own / total, "routing_fallback": shares.fallback / total,
                "routing_misrouted": shares.misrouted / total, "routing_confusion": confusion}

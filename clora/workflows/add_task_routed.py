"""``add-task``'s routed columns: each earlier task's routed score before and after the new task.

Routed mode is what ``predict`` and ``serve`` answer: each input runs in the snapshot of the
task the router picks. Adding a task leaves every earlier snapshot as it was, so an earlier
task's routed score moves only by inputs the new task's trigger or statistics now claim (or,
with ``fallback: sum``, by the new adapter acting on fallback inputs). Sum mode, the other column,
changes by every new adapter: reading it alone makes a task look forgotten while the served
answers are unchanged.
"""

from __future__ import annotations

from clora.data.task import Task
from clora.library.manifest import Manifest
from clora.evaluation.routed import routed_scores
from clora.routing.router import SUMMED, Router, RouterConfig
from clora.workflows.library_model import LibraryModel


def routed_columns(lm: LibraryModel, manifest: Manifest, overrides: dict, task: Task, earlier: list[Task], rows: list,
                   router_stats: list) -> float:
    """Fill ``rows``' ``routed_before`` / ``routed_after`` (:class:`~clora.workflows.add_task.EarlierTask`) and
    return the new task's routed score.

    ``lm`` holds the library's adapters and, last, the new one; ``router_stats`` the earlier tasks'
    statistics then the new task's. "Before" is the score the library recorded when there is one
    (``metrics.routed``), else it is measured with the new adapter switched off and the router over
    the earlier tasks only.
    """
    names = manifest.names
    config = RouterConfig.of_library(manifest.router, **overrides)
    answer_tasks = {**{e.name: e.as_task() for e in manifest.tasks}, task.name: task}
    triggers = [answer_tasks[n].triggers for n in names]
    snapshots = lm.snapshots()  # the new task's private adapter, if any, was registered with lm by training
    new_private = [lm.private_of[task.name]] if task.name in lm.private_of else []
    width = len(lm.lora)
    known = width - 1 - len(new_private)  # the library's own adapters come first, the new task's last
    after_router = Router(names + [task.name], router_stats, triggers + [task.triggers], config)
    after = routed_scores(lm.family, after_router, answer_tasks, earlier + [task],
                          {**snapshots, task.name: lm.all_adapters() + new_private}, width, width, lm.config)
    before = {e.name: e.metrics.get("routed") for e in manifest.tasks}
    missing = [t for t in earlier if before.get(t.name) is None]
    if missing:
        before_router = Router(names, router_stats[:-1], triggers, config)
        old = {**snapshots, SUMMED: [i for i in snapshots[SUMMED] if i < known]}
        before.update(routed_scores(lm.family, before_router, answer_tasks, missing, old, known, width,
                                    lm.config))
    for row in rows:
        row.routed_before, row.routed_after = before.get(row.task), after.get(row.task)
    return after[task.name]

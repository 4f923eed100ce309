"""Capacity of orth's reserved subspace: a budget that leaves every planned task room, and the table of use.

A module has ``d_in`` input directions. Each ``orth`` task reserves some (its energy
directions and its adapter's row space), so a long stream can use them all up. The
budget is a floor, not a share: task ``t`` of a stream planned for ``H`` tasks may
reserve at most ``free - rank * (H - t - 1)`` directions, so each later task within the
plan still finds room for its rank-``r`` adapter. Where capacity is plentiful the
budget never binds and the energy threshold alone decides (GPM, Saha et al. 2021);
near the end of the plan it caps the reservation, keeping the leading energy directions.
"""

from __future__ import annotations

from dataclasses import dataclass


def reservation_budget(free: int, rank: int, tasks_after: int) -> int:
    """How many directions a task may reserve out of ``free`` so that ``tasks_after`` later tasks keep ``rank`` each."""
    return max(0, free - rank * max(0, tasks_after))


@dataclass
class CapacityRow:
    """What one task reserved per module, and how many directions each module had free after it."""

    task: str
    reserved: dict[str, int]
    free_after: dict[str, int]

    @property
    def tightest(self) -> str:
        """The module with the fewest free directions after this task."""
        return min(self.free_after, key=lambda name: (self.free_after[name], name))


def capacity_rows(tasks: list[str], reserved: list[dict[str, int]], d_in: dict[str, int],
                  already: dict[str, int] | None = None) -> list[CapacityRow]:
    """One row per task from each task's reserved count per module; ``already``: reserved before the first."""
    used = dict(already or {name: 0 for name in d_in})
    rows = []
    for task, counts in zip(tasks, reserved):
        for name in d_in:
            used[name] = used.get(name, 0) + counts.get(name, 0)
        rows.append(CapacityRow(task, {n: counts.get(n, 0) for n in d_in}, {n: d_in[n] - used[n] for n in d_in}))
    return rows


def _span(values) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def capacity_markdown(rows: list[CapacityRow], d_in: dict[str, int]) -> list[str]:
    """Markdown lines: per task, directions reserved and left free (ranges over modules), and the tightest module."""
    if not rows:
        return []
    sizes = _span(d_in.values())
    lines = [f"Input directions per module: {sizes}. Per task, over the {len(d_in)} adapted modules:", "",
             "| task | reserved | free after | tightest module (free) |", "|---|---|---|---|"]
    for row in rows:
        tight = row.tightest
        lines.append(f"| {row.task} | {_span(row.reserved.values())} | {_span(row.free_after.values())} | "
                     f"{tight} ({row.free_after[tight]}) |")
    return lines + [""]


def low_capacity_warnings(free: dict[str, int], rank: int, after: str = "") -> list[str]:
    """A warning when some module has fewer than ``2 * rank`` free directions: one more task at most fits.

    Says what is left (the tightest module) and what to do; empty when every module has room for two tasks.
    """
    low = {name: n for name, n in free.items() if n < 2 * rank}
    if not low:
        return []
    tight = min(low, key=lambda name: (low[name], name))
    left = low[tight]
    if left >= rank:
        outlook = f"the next task fits at rank {rank}, the one after may find no room"
    elif left:
        outlook = f"the next task gets rank {left} there instead of {rank}"
    else:
        outlook = "the next task cannot be added"
    return [f"capacity{after}: {len(low)} module(s) have fewer than {2 * rank} free input directions (tightest "
            f"{tight}: {left} of its directions free); {outlook}. To make room: remove a task and release "
            "its directions, a lower energy, or a new library"]

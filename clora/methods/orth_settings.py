"""``orth``'s settings: where its reserved subspace comes from, how its Stiefel frames start and move.

Beside ``clora/methods/orth.py`` and free of torch, so the CLI can make its options without loading it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from clora.errors import ConfigError
from clora.settings import MethodSettings, check_choice, check_count, check_fraction, check_number, knob

SUBSPACE_SOURCES = ("adapters", "activations", "both")
RETRACTIONS = ("cayley", "qr")
#: where orth's frames start: along the steepest free directions of the task's loss, or at random
FRAME_INITS = ("gradient", "random")
#: how orth's frame rate moves over a task: ``constant``, or ``linear`` (falls to 0 by the last step)
FRAME_SCHEDULES = ("constant", "linear")
#: the energy threshold and frame start when none is given, by the kind of the task that reserves or
#: trains (log 15b7361:docs/results.md, "Where the frame starts"): MiniLM on cl-benchmark-4 forgets least with a random
#: start and 0.95; a generated answer, scored token by token, needs more of its inputs reserved (0.99)
#: and tiny random generative models learn little through a random slice of their inputs
KIND_ENERGY = {"classification": 0.95, "generation": 0.99}
KIND_FRAME_INIT = {"classification": "random", "generation": "gradient"}


@dataclass(frozen=True)
class OrthSettings(MethodSettings):
    """orth's knobs. Its default rate 3e-3 is B's; raising it to 6e-3 learns the second task better but the
    later adapters then disturb the earlier tasks in sum mode (log 15b7361:docs/results.md, "orth's two
    learning rates").
    """

    method = "orth"
    default_lr = 3e-3

    frame_lr: float | None = knob(
        None, "learning rate of the Stiefel frames X_t (default: --lr; B always takes --lr); scaled by "
              "sqrt(d_in r) so a frame steps as far as a Euclidean matrix would.", type=float)
    frame_schedule: str = knob(
        "constant", "the frames' rate over a task: constant, or linear (falls to 0 by the task's last step; "
                    "B keeps --lr).", choices=FRAME_SCHEDULES)
    attenuation: float = knob(
        0.0, "scale a new adapter down (by up to 90%) in the free directions where earlier tasks' inputs left "
             "energy outside the reserved subspace, by SGP's importance with scale coefficient gamma (larger: "
             "scaled more); 0 turns it off (scaled gradient projection, Saha & Roy 2023).")
    subspace: str = knob("both", "where reserved directions come from: the finished adapters' rows, the "
                                 "principal directions of the task's inputs, or both.", choices=SUBSPACE_SOURCES)
    energy: float | None = knob(
        None, "with activations: share of input energy a task reserves (GPM threshold); default 0.95 for a "
              "classification task, 0.99 for a generation task.", type=float)
    retraction: str = knob("cayley", "Stiefel retraction: cayley (canonical metric, a Lie-group step) or qr.",
                           choices=RETRACTIONS)
    frame_init: str | None = knob(
        None, "where each frame starts: gradient (the free directions along which a sample of the task's loss "
              "falls fastest) or random (uniform in the free directions); default random for a classification "
              "task, gradient for a generation task.", choices=FRAME_INITS)
    private_rank: int = knob(
        0, "rank of each task's private adapter: a free LoRA trained after the orthogonal one, with it frozen, "
           "that acts only where that task's snapshot answers (oracle, routed, --task, a trigger), never in sum "
           "mode or a fallback; 0 turns it off (the orthogonal adapter alone).", type=int)
    private_share: float = knob(
        0.25, "the private adapter's optimiser steps, as a share of the task's own steps.")
    private_lr: float | None = knob(
        None, "learning rate of the private adapter (default: --lr).", type=float)
    capacity_tasks: int | None = knob(
        None, "how many tasks the reserved subspace keeps room for (default: the stream's length); each task "
              "reserves at most what leaves every later task room for its rank.", type=int)

    def __post_init__(self) -> None:
        check_choice("subspace", self.subspace, SUBSPACE_SOURCES, "subspace source")
        check_choice("retraction", self.retraction, RETRACTIONS, "retraction")
        check_choice("frame_schedule", self.frame_schedule, FRAME_SCHEDULES, "frame schedule")
        check_choice("frame_init", self.frame_init, FRAME_INITS, "frame init", optional=True)
        check_count("capacity_tasks", self.capacity_tasks, optional=True)
        check_number("attenuation", self.attenuation, allow_zero=True)
        check_number("private_rank", self.private_rank, allow_zero=True)
        if not isinstance(self.private_rank, int):
            raise ConfigError(f"private_rank must be a whole number, got {self.private_rank!r}", field="private_rank")
        check_fraction("private_share", self.private_share)
        if self.private_lr is not None:
            check_number("private_lr", self.private_lr)
        if self.frame_lr is not None:
            check_number("frame_lr", self.frame_lr)
        if self.energy is not None:
            check_number("energy", self.energy)
            if not 0.0 < self.energy < 1.0:
                raise ConfigError(f"energy must be in (0, 1), got {self.energy!r}", field="energy")

    def energy_for(self, kind: str) -> float:
        """The energy threshold a task of ``kind`` reserves with."""
        return self.energy if self.energy is not None else KIND_ENERGY[kind]

    def frame_init_for(self, kind: str) -> str:
        """Where the frame of a task of ``kind`` starts."""
        return self.frame_init if self.frame_init is not None else KIND_FRAME_INIT[kind]

    def frame_rate(self, lr: float) -> float:
        """The rate the Stiefel frames train at: ``frame_lr``, or ``lr`` when that is ``None``."""
        return lr if self.frame_lr is None else self.frame_lr

    def planned(self, kinds: Sequence[str]) -> OrthSettings:
        """Room for every task of the stream unless told otherwise, and, where every task is of one kind,
        that kind's energy and frame start (``KIND_ENERGY``); a mixed stream keeps ``None``, decided task by
        task."""
        changes = {}
        if self.capacity_tasks is None:
            changes["capacity_tasks"] = len(kinds)
        if len(set(kinds)) == 1:
            changes.update(energy=self.energy_for(kinds[0]), frame_init=self.frame_init_for(kinds[0]))
        return dataclasses.replace(self, **changes)

    def recorded(self, lr: float) -> dict:
        """The knobs a report records, the frame rate resolved; without a private adapter its two other knobs
        are left out, so that a report is the one orth wrote before private adapters."""
        values = {**self.to_dict(), "frame_lr": self.frame_rate(lr)}  # the resolved rate, so a report says what ran
        if self.private_rank == 0:
            for name in ("private_rank", "private_share", "private_lr"):
                del values[name]
        else:
            values["private_lr"] = self.private_rate(lr)
        return values

    def private_rate(self, lr: float) -> float:
        """The private adapter's learning rate: ``private_lr``, or ``lr`` when that is ``None``."""
        return lr if self.private_lr is None else self.private_lr

"""``replay``'s settings: the share of each task's examples it keeps (beside ``clora/methods/replay.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from clora.settings import MethodSettings, check_count, check_fraction, knob


@dataclass(frozen=True)
class ReplaySettings(MethodSettings):
    """Experience replay on top of IncLoRA."""

    method = "replay"
    default_lr = 3e-3

    replay_fraction: float = knob(0.02, "share of each task's training examples kept and trained on with "
                                        "every later task.")
    replay_max: int | None = knob(None, "the most examples kept of any one task (default: no cap), so that a "
                                        "large task's share does not grow the buffer and every later task's "
                                        "training without bound.", type=int)

    def __post_init__(self) -> None:
        check_fraction("replay_fraction", self.replay_fraction)
        check_count("replay_max", self.replay_max, optional=True)

"""Run configuration: one validated dataclass shared by the library and the CLI."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from clora.errors import ConfigError

METHODS = ("seq", "inc", "olora", "olie", "orth", "mtl", "osf", "replay")
SUBSPACE_SOURCES = ("adapters", "activations", "both")
RETRACTIONS = ("cayley", "qr")
#: where orth's frames start: along the steepest free directions of the task's loss, or at random
FRAME_INITS = ("gradient", "random")
#: how orth's frame rate moves over a task: ``constant``, or ``linear`` (falls to 0 by the last step)
FRAME_SCHEDULES = ("constant", "linear")
#: orth's energy threshold and frame start when none is given, by the kind of the task that reserves or
#: trains (docs/results.md, "Where the frame starts"): MiniLM on cl-benchmark-4 forgets least with a random
#: start and 0.95; a generated answer, scored token by token, needs more of its inputs reserved (0.99)
#: and tiny random generative models learn little through a random slice of their inputs
KIND_ENERGY = {"classification": 0.95, "generation": 0.99}
KIND_FRAME_INIT = {"classification": "random", "generation": "gradient"}
#: tokens of each input the router reads (docs/results.md: routing accuracy against cost)
ROUTER_TOKENS = 64
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: the fewest optimiser steps a task trains for when ``epochs`` would give fewer: a task of a few dozen
#: examples gets whole epochs more until it reaches this many (docs/results.md, "Small tasks": 48
#: examples at 3 epochs take 9 steps and learn little). The shipped benchmarks take more steps than
#: this at their defaults, so their reports do not change.
MIN_STEPS = 45
#: epochs per task when none are given (raised for a small task until it takes ``min_steps`` steps)
DEFAULT_EPOCHS = 3
#: a task that trains for fewer steps than this (``min_steps`` lowered) is warned about
FEW_STEPS = 30
#: Learning rate per method when none is given, tuned on the four shared CL-benchmark tasks
#: (docs/results.md). olie's multiplicative update W * (exp(s B A) - 1) is scaled by the
#: weights' own entries (|W| ~ 0.05 in MiniLM), so it needs a larger rate for the same step.
#: orth's Stiefel frames have a rate of their own (``frame_lr``); raising B's rate alone to
#: 6e-3 learns the second task better but the later adapters then disturb the earlier tasks
#: in sum mode (docs/results.md, "orth's two learning rates").
#: osf trains the weights' own singular vectors and values (full-rank fine-tuning in the
#: complement of the preserved directions), so it takes a full fine-tuning rate, not a LoRA one.
DEFAULT_LR = {"seq": 3e-3, "inc": 3e-3, "olora": 3e-3, "olie": 1e-2, "orth": 3e-3, "mtl": 3e-3, "osf": 1e-4,
              "replay": 3e-3}


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_device_name(name: str, field: str = "device") -> None:
    """ConfigError unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise ConfigError(f"unknown device {name!r} (choose from auto, cpu, cuda, cuda:N)", field=field)


def check_precision_name(name: str, field: str = "precision") -> None:
    """ConfigError unless ``name`` is one of ``PRECISIONS``."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})", field=field)


def check_output_path(path: Path, what: str = "output folder", field: str = "out") -> None:
    """Refuse a folder that cannot be made: it or a folder above it is a file, or its nearest existing
    folder cannot be written to. Checked before any work, so a long run never fails at its end."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} exists and is not a folder", field=field)
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{what} {str(path)!r} cannot be made: {str(ancestor)!r} is a file", field=field)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r} cannot be made: no permission to write in {str(ancestor)!r}",
                          field=field)


def _check_number(name: str, value, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}", field=name)
    bad = value < 0 if allow_zero else value <= 0
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {bound}, got {value!r}", field=name)


def _check_fraction(name: str, value) -> None:
    _check_number(name, value)
    if value > 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}", field=name)


def _check_preserve(value) -> tuple[float, float]:
    """osf's preserved fraction of each weight's singular directions on the first and last task."""
    try:
        first, last = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"osf_preserve must be two fractions (first task, last task), got {value!r}",
                          field="osf_preserve") from None
    for v in (first, last):
        if not 0.0 < v < 1.0:
            raise ConfigError(f"osf_preserve fractions must be in (0, 1), got {value!r}", field="osf_preserve")
    return first, last


#: seeds are fed to numpy's and torch's generators, which take 32-bit ones
MAX_SEED = 2**32 - 1


def check_seed(value, field: str = "seed") -> None:
    """ConfigError unless ``value`` is an integer in [0, 2^32 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {value!r}", field=field)


def _check_count(name: str, value, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", field=name)


@dataclass
class RunConfig:
    """Everything that decides a continual run; validated on construction.

    ``lr`` ``None`` means the method's tuned default (``DEFAULT_LR``).
    ``max_train`` / ``max_test`` cap the examples per task (``None`` = all).
    ``alpha`` is the LoRA scale numerator: the update is ``(alpha / rank) * B A``.
    ``frame_lr`` is the rate of ``orth``'s Stiefel frames (scaled by ``sqrt(d_in r)`` in
    ``clora.training.loop.param_groups``); ``None`` means ``lr``.
    ``energy`` is the GPM energy threshold for the ``activations`` subspace source (``None``: by the
    reserving task's kind, ``KIND_ENERGY``).
    ``lambda1`` / ``lambda2`` weigh O-LoRA's orthogonality and L2 terms; ``olie_lambda``
    weighs OLieRA's penalty and ``taylor_order`` is the order of its Taylor exp.
    ``frame_init`` is where ``orth``'s frames start: ``gradient`` (the steepest free
    directions of a sample of the task's loss) or ``random`` (uniform in the free directions);
    ``None``: by the task's kind (``KIND_FRAME_INIT``).
    ``frame_schedule`` is how the frames' rate moves over a task: ``constant`` or ``linear``
    (from ``frame_lr`` down to 0 at the task's last step; B keeps its rate).
    ``attenuation`` (``gamma`` >= 0; 0: off) scales a new orth adapter down in the free directions
    where earlier tasks' inputs left energy outside the reserved subspace
    (``clora.adapters.attenuation``; scaled gradient projection, Saha & Roy 2023).
    ``capacity_tasks`` is how many tasks orth's subspace budget keeps room for (``None``:
    the stream's length in a run; a library records the number it was planned for).
    ``replay_fraction`` is the share of each task's training examples ``replay`` keeps.
    ``epochs`` ``None`` means ``DEFAULT_EPOCHS``, raised for a small task until it takes ``min_steps``
    optimiser steps (more whole epochs); ``min_steps`` ``None`` means ``MIN_STEPS`` when ``epochs`` is
    not given and 0 when it is (epochs given are trained exactly). Both are ints once validated.
    ``osf_preserve`` is ``osf``'s preserved fraction of each weight's singular directions
    on the first and the last task (linear in between, as PEFT's OSF example raises it).
    """

    stream: str
    out: Path | None = None
    data_dir: Path | None = None
    model: str = DEFAULT_MODEL
    method: str = "orth"
    rank: int = 8
    alpha: float = 16.0
    epochs: int | None = None
    min_steps: int | None = None
    lr: float | None = None
    frame_lr: float | None = None
    batch_size: int = 16
    max_train: int | None = None
    max_test: int | None = None
    seed: int = 0
    targets: tuple[str, ...] | None = None
    subspace: str = "both"
    energy: float | None = None
    retraction: str = "cayley"
    frame_init: str | None = None
    frame_schedule: str = "constant"
    attenuation: float = 0.0
    temperature: float = 0.05
    lambda1: float = 0.5
    lambda2: float = 0.0
    olie_lambda: float = 1e-4
    taylor_order: int = 2
    max_length: int = 128
    eval_batch_size: int = 64
    router_layer: int | None = None
    router_tokens: int | None = ROUTER_TOKENS
    capacity_tasks: int | None = None
    replay_fraction: float = 0.02
    osf_preserve: tuple[float, float] = (0.3, 0.7)
    device: str = "auto"
    precision: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r} (choose from {', '.join(METHODS)})", field="method")
        if self.subspace not in SUBSPACE_SOURCES:
            raise ConfigError(f"unknown subspace source {self.subspace!r} (choose from {', '.join(SUBSPACE_SOURCES)})",
                              field="subspace")
        if self.retraction not in RETRACTIONS:
            raise ConfigError(f"unknown retraction {self.retraction!r} (choose from {', '.join(RETRACTIONS)})",
                              field="retraction")
        if self.frame_schedule not in FRAME_SCHEDULES:
            raise ConfigError(f"unknown frame schedule {self.frame_schedule!r} (choose from "
                              f"{', '.join(FRAME_SCHEDULES)})", field="frame_schedule")
        if self.frame_init is not None and self.frame_init not in FRAME_INITS:
            raise ConfigError(f"unknown frame init {self.frame_init!r} (choose from {', '.join(FRAME_INITS)})",
                              field="frame_init")
        if self.min_steps is None:
            self.min_steps = MIN_STEPS if self.epochs is None else 0
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS
        for name in ("rank", "epochs", "batch_size", "max_length", "eval_batch_size", "taylor_order"):
            _check_count(name, getattr(self, name))
        for name in ("max_train", "max_test", "router_layer", "router_tokens", "capacity_tasks"):
            _check_count(name, getattr(self, name), optional=True)
        check_seed(self.seed)
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ConfigError(f"min_steps must be a non-negative integer, got {self.min_steps!r}", field="min_steps")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.method]
        for name in ("lr", "alpha", "temperature") + (("frame_lr",) if self.frame_lr is not None else ()):
            _check_number(name, getattr(self, name))
        for name in ("lambda1", "lambda2", "olie_lambda", "attenuation"):
            _check_number(name, getattr(self, name), allow_zero=True)
        check_device_name(self.device)
        check_precision_name(self.precision)
        _check_fraction("replay_fraction", self.replay_fraction)
        self.osf_preserve = _check_preserve(self.osf_preserve)
        if self.energy is not None:
            _check_number("energy", self.energy)
            if not 0.0 < self.energy < 1.0:
                raise ConfigError(f"energy must be in (0, 1), got {self.energy!r}", field="energy")
        if self.targets is not None:
            self.targets = tuple(t.strip() for t in self.targets if t.strip())
            if not self.targets:
                raise ConfigError("targets must name at least one module", field="targets")
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.out is not None:
            self.out = Path(self.out)

    def energy_for(self, kind: str) -> float:
        """The energy threshold a task of ``kind`` reserves with."""
        return self.energy if self.energy is not None else KIND_ENERGY[kind]

    def frame_init_for(self, kind: str) -> str:
        """Where the frame of a task of ``kind`` starts."""
        return self.frame_init if self.frame_init is not None else KIND_FRAME_INIT[kind]

    def epochs_for(self, steps_per_epoch: int) -> int:
        """Epochs a task of ``steps_per_epoch`` steps trains for: ``epochs``, or more whole epochs until it
        takes ``min_steps`` steps."""
        return max(self.epochs, -(-self.min_steps // max(1, steps_per_epoch)))

    @property
    def frame_rate(self) -> float:
        """The rate orth's Stiefel frames train at: ``frame_lr``, or ``lr`` when that is ``None``."""
        return self.lr if self.frame_lr is None else self.frame_lr

    @property
    def scaling(self) -> float:
        """LoRA scale alpha / r (Hu et al. 2021)."""
        return self.alpha / self.rank

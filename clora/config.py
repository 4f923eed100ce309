"""Run configuration: one validated dataclass shared by the library and the CLI."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clora.errors import ConfigError
from clora.settings import MethodSettings, check_count, check_number, settings_class

METHODS = ("seq", "inc", "olora", "olie", "orth", "mtl", "osf", "replay")
#: tokens of each input the router reads (log 15b7361:docs/results.md, routing accuracy against cost)
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
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: how the base's linear layers may be stored (``clora.families.quantization``)
QUANTIZATIONS = ("none", "int8", "nf4")
#: the settings every method shares that a report records (its method's own knobs follow them)
SHARED_SETTINGS = ("rank", "alpha", "epochs", "min_steps", "lr", "batch_size", "max_train", "max_test", "seed",
                   "temperature", "max_length")


def check_device_name(name: str, field: str = "device") -> None:
    """ConfigError unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise ConfigError(f"unknown device {name!r} (choose from auto, cpu, cuda, cuda:N)", field=field)


def check_precision_name(name: str, field: str = "precision") -> None:
    """ConfigError unless ``name`` is one of ``PRECISIONS``."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})", field=field)


def check_quantize_name(name: str, field: str = "quantize") -> None:
    """ConfigError unless ``name`` is one of ``QUANTIZATIONS``."""
    if name not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {name!r} (choose from {', '.join(QUANTIZATIONS)})", field=field)


def check_base_trainable(method: str, settings: MethodSettings, quantization: str) -> None:
    """ConfigError when ``method`` trains the base's own weights (``osf``) and the base is quantized."""
    if quantization != "none" and settings.trains_base_weights:
        raise ConfigError(f"method {method} trains the base model's own weights, which an {quantization} base "
                          "cannot (quantize none)", field="quantize")


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


#: seeds are fed to numpy's and torch's generators, which take 32-bit ones
MAX_SEED = 2**32 - 1


def check_seed(value, field: str = "seed") -> None:
    """ConfigError unless ``value`` is an integer in [0, 2^32 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {value!r}", field=field)


@dataclass
class RunConfig:
    """Everything that decides a continual run, shared by every method; validated on construction.

    ``settings`` are the method's own knobs (``clora/methods/<method>_settings.py``): an instance of its
    settings class, a mapping of knob names to values, or ``None`` for its defaults; a settings class
    once validated. ``lr`` ``None`` means the method's tuned default (``settings.default_lr``).
    ``max_train`` / ``max_test`` cap the examples per task (``None`` = all).
    ``quantize`` (``none``, ``int8``, ``nf4``) is how the base's linear layers are loaded; ``None``: in full
    precision, or as a model object given is.
    ``alpha`` is the LoRA scale numerator: the update is ``(alpha / rank) * B A``.
    ``epochs`` ``None`` means ``DEFAULT_EPOCHS``, raised for a small task until it takes ``min_steps``
    optimiser steps (more whole epochs); ``min_steps`` ``None`` means ``MIN_STEPS`` when ``epochs`` is
    not given and 0 when it is (epochs given are trained exactly). Both are ints once validated.
    """

    stream: str
    out: Path | None = None
    data_dir: Path | None = None
    model: str = DEFAULT_MODEL
    method: str = "orth"
    settings: MethodSettings | Mapping | None = None
    rank: int = 8
    alpha: float = 16.0
    epochs: int | None = None
    min_steps: int | None = None
    lr: float | None = None
    batch_size: int = 16
    max_train: int | None = None
    max_test: int | None = None
    seed: int = 0
    targets: tuple[str, ...] | None = None
    temperature: float = 0.05
    max_length: int = 128
    eval_batch_size: int = 64
    router_layer: int | None = None
    router_tokens: int | None = ROUTER_TOKENS
    device: str = "auto"
    precision: str = "auto"
    quantize: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r} (choose from {', '.join(METHODS)})", field="method")
        self.settings = method_settings(self.method, self.settings)
        if self.min_steps is None:
            self.min_steps = MIN_STEPS if self.epochs is None else 0
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS
        for name in ("rank", "epochs", "batch_size", "max_length", "eval_batch_size"):
            check_count(name, getattr(self, name))
        for name in ("max_train", "max_test", "router_layer", "router_tokens"):
            check_count(name, getattr(self, name), optional=True)
        check_seed(self.seed)
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ConfigError(f"min_steps must be a non-negative integer, got {self.min_steps!r}", field="min_steps")
        if self.lr is None:
            self.lr = self.settings.default_lr
        for name in ("lr", "alpha", "temperature"):
            check_number(name, getattr(self, name))
        check_device_name(self.device)
        check_precision_name(self.precision)
        if self.quantize is not None:
            check_quantize_name(self.quantize)
            check_base_trainable(self.method, self.settings, self.quantize)
        if self.targets is not None:
            self.targets = tuple(t.strip() for t in self.targets if t.strip())
            if not self.targets:
                raise ConfigError("targets must name at least one module", field="targets")
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.out is not None:
            self.out = Path(self.out)

    def for_method(self, method: str, knobs: Mapping | None = None, lr: float | None = None) -> RunConfig:
        """This config for ``method``: its settings from those of ``knobs`` that are its own, the rest
        left out (a comparison gives every method's knobs at once), at rate ``lr`` (``None``: its default)."""
        settings = settings_class(method).from_dict(dict(knobs or {}), strict=False)
        return dataclasses.replace(self, method=method, settings=settings, lr=lr)

    def epochs_for(self, steps_per_epoch: int) -> int:
        """Epochs a task of ``steps_per_epoch`` steps trains for: ``epochs``, or more whole epochs until it
        takes ``min_steps`` steps."""
        return max(self.epochs, -(-self.min_steps // max(1, steps_per_epoch)))

    @property
    def scaling(self) -> float:
        """LoRA scale alpha / r (Hu et al. 2021)."""
        return self.alpha / self.rank


def method_settings(method: str, given: MethodSettings | Mapping | None) -> MethodSettings:
    """``method``'s settings from ``given`` (its settings, a mapping of its knobs, or ``None``: defaults)."""
    cls = settings_class(method)
    if given is None:
        return cls()
    if isinstance(given, Mapping):
        return cls.from_dict(given)
    if type(given) is not cls:
        raise ConfigError(f"the settings given are {getattr(given, 'method', '?') or type(given).__name__}'s, "
                          f"but the method is {method} (config.for_method({method!r}) gives a config for another "
                          "method)", field="settings")
    return given

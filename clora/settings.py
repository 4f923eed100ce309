"""A method's own settings: the dataclass every method's settings derive from, and the register of them.

Each method declares its knobs beside its code (``clora/methods/<name>_settings.py``), as PEFT's
``LoraConfig`` does: fields made with :func:`knob` (default and help), its default learning rate, and its
checks in ``__post_init__``. From these alone the CLI makes its options, a library stores and re-reads its
settings, and a report records them; no other file names a method's knob.

This module knows no method and imports no torch, so the CLI's ``--help`` stays fast. A settings class
registers itself when it is defined; ``clora/__init__.py`` imports ``clora.methods.catalog``, which defines
them all, so every ``import clora...`` finds them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from clora.errors import ConfigError

_REGISTERED: dict[str, type[MethodSettings]] = {}


def check_number(name: str, value, allow_zero: bool = False) -> None:
    """ConfigError unless ``value`` is a finite positive number (non-negative with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}", field=name)
    bad = value < 0 if allow_zero else value <= 0
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {bound}, got {value!r}", field=name)


def check_fraction(name: str, value) -> None:
    """ConfigError unless ``value`` is in (0, 1]."""
    check_number(name, value)
    if value > 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}", field=name)


def check_count(name: str, value, optional: bool = False) -> None:
    """ConfigError unless ``value`` is a positive integer (or ``None`` with ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", field=name)


def check_choice(name: str, value, choices: Sequence[str], what: str, optional: bool = False) -> None:
    """ConfigError unless ``value`` is one of ``choices`` (or ``None`` with ``optional``)."""
    if optional and value is None:
        return
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r} (choose from {', '.join(choices)})", field=name)


def knob(default, help: str, *, type: type | tuple | None = None, choices: Sequence[str] | None = None) -> Any:
    """A settings field: its ``default``, a one-sentence ``help`` (the CLI's), the value's ``type`` where
    the default does not show it (``None`` defaults; a tuple type such as ``(float, float)``) and its
    ``choices`` for a string."""
    return dataclasses.field(default=default, metadata={
        "help": help, "type": type if type is not None else builtin_type(default), "choices": choices})


def builtin_type(value):
    return tuple(builtin_type(v) for v in value) if isinstance(value, tuple) else (
        str if value is None else type(value))


@dataclass(frozen=True)
class MethodSettings:
    """The knobs of one method (none here); subclasses set ``method`` and ``default_lr`` and add fields."""

    #: the method's name (``clora run --method``)
    method: ClassVar[str] = ""
    #: the learning rate a run of this method takes when none is given, tuned on the four shared tasks
    default_lr: ClassVar[float] = 3e-3
    #: whether the method trains the base model's own weights (it then needs them in full precision)
    trains_base_weights: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.method:
            _REGISTERED[cls.method] = cls

    @classmethod
    def knobs(cls) -> tuple[dataclasses.Field, ...]:
        """The method's own fields, in order."""
        return fields(cls)

    def to_dict(self) -> dict:
        """Every knob's value as JSON holds it (a tuple as a list): what a library stores and a report records."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping, *, strict: bool = True) -> MethodSettings:
        """Settings from ``values`` (knob name -> value); with ``strict``, a key that is not one of this
        method's knobs is refused, naming the method that owns it; else (stored settings) such keys and
        ``None`` values are left out."""
        own = {f.name for f in fields(cls)}
        foreign = [k for k in values if k not in own]
        if strict and foreign:
            owners = owners_of(foreign[0])
            whose = f" (a setting of {', '.join(owners)})" if owners else ""
            raise ConfigError(f"{foreign[0]} is not a setting of method {cls.method}{whose}", field=foreign[0])
        # a stored null means "not set" (the first library format kept one for every unused knob)
        stored = {k: v for k, v in values.items() if k in own and (strict or v is not None)}
        for f in fields(cls):  # a JSON file holds a tuple as a list
            if isinstance(f.metadata.get("type"), tuple) and isinstance(stored.get(f.name), list):
                stored[f.name] = tuple(stored[f.name])
        return cls(**stored)

    def planned(self, kinds: Sequence[str]) -> MethodSettings:
        """These settings for a stream of tasks of ``kinds`` (what a method resolves once it knows them)."""
        return self

    def recorded(self, lr: float) -> dict:
        """What a report records of these settings for a run at rate ``lr`` (resolved values, not ``None``)."""
        return self.to_dict()


def settings_class(method: str) -> type[MethodSettings]:
    """The settings class of ``method`` (ConfigError naming the known methods otherwise)."""
    if method not in _REGISTERED:
        raise ConfigError(f"unknown method {method!r} (choose from {', '.join(_REGISTERED)})", field="method")
    return _REGISTERED[method]


def registered() -> dict[str, type[MethodSettings]]:
    """Method name -> its settings class, in the order they were defined (``clora.methods.catalog``)."""
    return dict(_REGISTERED)


def owners_of(key: str) -> list[str]:
    """The methods that have a knob named ``key``."""
    return [m for m, cls in _REGISTERED.items() if key in {f.name for f in fields(cls)}]

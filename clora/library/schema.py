"""Types of a manifest's fields, checked when it is read (``docs/library-format.md``).

A manifest is JSON that a person or another tool may have edited; every command reads it
through :func:`manifest_type_problem`, so a field of the wrong type is one line naming
the field, never a ``TypeError`` deep inside a loader.
"""

from __future__ import annotations

from clora.config import QUANTIZATIONS
from clora.data.task import KINDS
from clora.errors import ConfigError
from clora.settings import settings_class

FAMILIES = ("encoder", "causal", "seq2seq")


def _int(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _strings(value, non_empty: bool = False) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and (bool(value) or not non_empty)


def _optional(check):
    return lambda value: value is None or check(value)


_TOP = {
    "version": lambda v: _int(v, 1),
    "previous_version": _optional(lambda v: _int(v, 1)),
    "base_model": lambda v: isinstance(v, str) and bool(v),
    "base_fingerprint": lambda v: isinstance(v, str),
    "family": lambda v: v in FAMILIES,
    "target_modules": lambda v: _strings(v, non_empty=True),
    "method": lambda v: isinstance(v, str),
    "settings": lambda v: isinstance(v, dict),
    "scaling": lambda v: _number(v) and v > 0,
    "modules": lambda v: isinstance(v, dict) and all(
        isinstance(d, dict) and _int(d.get("d_in"), 1) and _int(d.get("d_out"), 1) for d in v.values()),
    "router": _optional(lambda v: isinstance(v, dict)),
    "reserved": lambda v: isinstance(v, list) and all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("subspace"), str) for r in v),
    "files": lambda v: isinstance(v, dict) and all(isinstance(h, str) for h in v.values()),
    "base_quantization": _optional(lambda v: isinstance(v, dict) and v.get("method") in QUANTIZATIONS
                                   and isinstance(v.get("outside_linear"), str)),
}

_ROUTER = {
    "layer": lambda v: _int(v, 0),
    "tokens": lambda v: _int(v, 1),
    "threshold": lambda v: _number(v) and 0.0 <= v <= 1.0,
    "margin": lambda v: _number(v) and v > 0,
    "shrinkage": lambda v: _number(v) and 0.0 <= v <= 1.0,
    "fallback": lambda v: v in ("sum", "base"),
}

#: the settings every method shares; the method's own are checked by its settings class (``clora.settings``)
_SETTINGS = {
    **{key: lambda v: _int(v, 1) for key in ("rank", "epochs", "batch_size", "max_length", "eval_batch_size")},
    **{key: lambda v: _int(v, 0) for key in ("seed", "min_steps")},
    **{key: _optional(_number) for key in ("alpha", "lr", "temperature")},
}


def _method_settings_problem(method, settings: dict) -> str | None:
    """What the method's settings class refuses in ``settings`` (other methods' keys, from older files, aside)."""
    try:
        settings_class(method).from_dict(settings, strict=False)
    except ConfigError as error:
        return f"{'' if error.field == 'method' else 'settings.'}{error.field}: {error}"
    return None


_TASK = {
    "labels": _strings,  # non-empty for classification: checked below
    "kind": lambda v: v in KINDS,
    "metric": lambda v: isinstance(v, str),
    "max_new_tokens": lambda v: _int(v, 1),
    "snapshot": _strings,
    "adapter": _optional(lambda v: isinstance(v, str)),
    "private": _optional(lambda v: isinstance(v, str)),
    "subspace": _optional(lambda v: isinstance(v, str)),
    "router": _optional(lambda v: isinstance(v, str)),
    "triggers": _optional(lambda v: isinstance(v, dict)),
    "instruction": _optional(lambda v: isinstance(v, str)),
    "prompt": _optional(lambda v: isinstance(v, str)),
    "rank": _optional(lambda v: _int(v, 1)),
    "metrics": _optional(lambda v: isinstance(v, dict)),
    "data": _optional(lambda v: isinstance(v, dict)),
}


def _first_bad(data: dict, checks: dict, prefix: str) -> str | None:
    for key, ok in checks.items():
        if key in data and not ok(data[key]):
            return f"{prefix}{key} has the wrong type or value ({data[key]!r:.60})"
    return None


def manifest_type_problem(manifest: dict) -> str | None:
    """The first field of ``manifest`` whose type or value is wrong, as a phrase; None when all fit."""
    problem = _first_bad(manifest, _TOP, "")
    if problem is None:
        problem = _first_bad(manifest.get("settings", {}), _SETTINGS, "settings.")
    if problem is None:
        problem = _method_settings_problem(manifest.get("method"), manifest.get("settings", {}))
    if problem is None and isinstance(manifest.get("router"), dict):
        problem = _first_bad(manifest["router"], _ROUTER, "router.")
    for task in manifest.get("tasks", []):
        if problem is None:
            problem = _first_bad(task, _TASK, f"task {task['name']!r}: ")
        if problem is None and task.get("kind", "classification") == "classification" and not task.get("labels"):
            problem = f"task {task['name']!r} has no labels"
    return problem

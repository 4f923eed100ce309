"""Explicit triggers: keywords, regular expressions and prefixes that name a task outright.

A task's ``triggers`` mapping (stream file, ``add-task --trigger``, or the library)::

    {"keywords": ["invoice", "refund"], "regex": ["^order #\\\\d+"], "prefixes": ["[billing]"]}

Keywords match whole words, case-insensitively; regular expressions use ``re.search``
(case-insensitive); prefixes match the start of the stripped input, case-insensitively.
Explicit triggers take priority over the learned router.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clora.errors import ConfigError

TRIGGER_KINDS = ("keywords", "regex", "prefixes")


@dataclass
class TriggerSet:
    """The compiled triggers of one task."""

    task: str
    patterns: list[re.Pattern]
    prefixes: list[str]

    @classmethod
    def compile(cls, task: str, triggers: dict | None) -> "TriggerSet":
        triggers = triggers or {}
        unknown = sorted(set(triggers) - set(TRIGGER_KINDS))
        if unknown:
            raise ConfigError(f"task {task!r}: unknown trigger kind(s) {', '.join(unknown)} "
                              f"(use {', '.join(TRIGGER_KINDS)})")
        patterns = [re.compile(rf"\b{re.escape(k)}\b", re.IGNORECASE) for k in triggers.get("keywords", [])]
        for expr in triggers.get("regex", []):
            try:
                patterns.append(re.compile(expr, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(f"task {task!r}: bad trigger regex {expr!r} ({exc})") from None
        return cls(task, patterns, [p.lower() for p in triggers.get("prefixes", [])])

    def matches(self, text: str) -> bool:
        head = text.lstrip().lower()
        return any(head.startswith(p) for p in self.prefixes) or any(p.search(text) for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns or self.prefixes)


def parse_trigger_args(values: list[str]) -> dict:
    """``["refund", "regex:^order #\\d+", "prefix:[billing]"]`` -> a triggers mapping."""
    triggers: dict[str, list[str]] = {}
    for value in values:
        kind, sep, rest = value.partition(":")
        if sep and kind in ("regex", "prefix") and rest:
            triggers.setdefault("regex" if kind == "regex" else "prefixes", []).append(rest)
        else:
            triggers.setdefault("keywords", []).append(value)
    return triggers


def explicit_task(text: str, trigger_sets: list[TriggerSet]) -> str | None:
    """The first task (in library order) whose triggers match ``text``, else ``None``."""
    for triggers in trigger_sets:
        if triggers and triggers.matches(text):
            return triggers.task
    return None

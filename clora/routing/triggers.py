"""Explicit triggers: keywords, regular expressions and prefixes that name a task outright.

A task's ``triggers`` mapping (stream file, ``add-task --trigger``, or the library)::

    {"keywords": ["invoice", "refund"], "regex": ["^order #\\\\d+"], "prefixes": ["[billing]"]}

Keywords match whole words, case-insensitively; regular expressions search the input
(case-insensitive); prefixes match the start of the stripped input, case-insensitively.
Explicit triggers take priority over the learned router.

No input can make a trigger take long. Patterns run on the ``regex`` engine with a time
budget per search (``MATCH_TIMEOUT_S``; a search that runs out counts as no match), and a
pattern is refused when it is made (stream load, add-task, import) if it already runs out
of time on a probe built from its own characters, as ``(a|aa)+$`` does on ``"aaa...!"``:
catastrophic backtracking is caught before it can stall a server.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import regex

from clora.errors import ConfigError

TRIGGER_KINDS = ("keywords", "regex", "prefixes")
MATCH_TIMEOUT_S = 0.005
#: a pattern that needs longer than this on a probe input is refused outright
PROBE_TIMEOUT_S = 0.02
MAX_PATTERN_CHARS = 500
log = logging.getLogger("clora")


def _probes(expr: str) -> list[str]:
    """Inputs that make backtracking patterns explode: runs of the pattern's own letters, then a mismatch."""
    letters = sorted({c for c in expr if c.isalnum()}) or ["a"]
    runs = [c * n for c in letters[:8] for n in (40, 5000)]  # some patterns blow up only on long inputs
    runs += ["".join(letters[:8]) * 8, "a" * 40, "a" * 5000, " " * 40, "ab" * 20]
    return [run + end for run in runs for end in ("!", "\n", "")]


def compile_pattern(task: str, expr: str, strict: bool = True):
    """``expr`` compiled (case-insensitive), or ConfigError when it is invalid, too long or pathological.

    ``strict`` False (a library already on disk): a pathological pattern is kept, with a
    warning; each search of it still stops at ``MATCH_TIMEOUT_S``.
    """
    if not isinstance(expr, str) or not expr:
        raise ConfigError(f"task {task!r}: a trigger regex must be a non-empty string, got {expr!r}", field="triggers")
    if len(expr) > MAX_PATTERN_CHARS:
        raise ConfigError(f"task {task!r}: trigger regex of {len(expr)} characters (at most {MAX_PATTERN_CHARS})",
                          field="triggers")
    try:
        re.compile(expr)  # the syntax users know; the regex engine accepts a superset
        pattern = regex.compile(expr, regex.IGNORECASE | regex.V0)
    except (re.error, regex.error) as exc:
        raise ConfigError(f"task {task!r}: bad trigger regex {expr!r} ({exc})", field="triggers") from None
    for probe in _probes(expr):
        try:
            pattern.search(probe, timeout=PROBE_TIMEOUT_S, concurrent=True)
        except TimeoutError:
            message = (f"task {task!r}: trigger regex {expr!r} backtracks catastrophically (over "
                       f"{PROBE_TIMEOUT_S * 1000:.0f} ms on a {len(probe)}-character input); rewrite it without "
                       "nested repetition")
            if strict:
                raise ConfigError(message, field="triggers") from None
            log.warning("%s; each search of it is cut off after %.0f ms", message, MATCH_TIMEOUT_S * 1000)
            break
    return pattern


def _search(pattern, text: str) -> bool:
    try:
        return pattern.search(text, timeout=MATCH_TIMEOUT_S, concurrent=True) is not None  # concurrent: no GIL
    except TimeoutError:
        log.warning("trigger regex %r ran out of time on an input of %d characters; treated as no match",
                    pattern.pattern, len(text))
        return False


@dataclass
class TriggerSet:
    """The compiled triggers of one task."""

    task: str
    patterns: list
    prefixes: list[str]

    @classmethod
    def compile(cls, task: str, triggers: dict | None, strict: bool = True) -> "TriggerSet":
        """The triggers of ``task``; ``strict`` False keeps (with a warning) a pathological regex of a
        library already on disk rather than refusing the whole library."""
        triggers = triggers or {}
        unknown = sorted(set(triggers) - set(TRIGGER_KINDS))
        if unknown:
            raise ConfigError(f"task {task!r}: unknown trigger kind(s) {', '.join(unknown)} "
                              f"(use {', '.join(TRIGGER_KINDS)})")
        for kind in TRIGGER_KINDS:
            values = triggers.get(kind, [])
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise ConfigError(f"task {task!r}: trigger {kind} must be a list of non-empty strings, got {values!r}",
                                  field="triggers")
        patterns = [regex.compile(rf"\b{regex.escape(k)}\b", regex.IGNORECASE) for k in triggers.get("keywords", [])]
        patterns += [compile_pattern(task, expr, strict) for expr in triggers.get("regex", [])]
        return cls(task, patterns, [p.lower() for p in triggers.get("prefixes", [])])

    def matches(self, text: str) -> bool:
        head = text.lstrip().lower()
        return any(head.startswith(p) for p in self.prefixes) or any(_search(p, text) for p in self.patterns)

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

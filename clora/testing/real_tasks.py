"""Small tasks cut from the shared real tasks, with or without their template prefixes.

The ten shared tasks (``../shared/data/CL_Benchmark``) are written in templates: ``Title: ...
Text: ...``, ``question: ... passage: ...``, ``sentence 1: ... sentence 2: ...``. A router
learns those prefixes first, and a user's own data has none, so a router is measured
here on the text alone too (``prefixes=False``): each line's field label is removed
(``Title:``, ``paragraph:``, ``A:`` ...) and COPA's question frame is reduced to its
premise. Nothing is copied into the project: the tasks are read from the data folder.

Used by ``examples/benchmarks/unseen_domains.py`` and the routing tests (which skip when
the data folder is absent).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

from clora.data.task import Example, Task

#: task name -> folder under the data root
SHARED_TASKS = {"agnews": "TC/agnews", "amazon": "SC/amazon", "dbpedia": "TC/dbpedia", "yelp": "SC/yelp",
                "mnli": "NLI/MNLI", "cb": "NLI/CB", "wic": "WiC/WiC", "copa": "COPA/COPA",
                "boolqa": "BoolQA/BoolQA", "multirc": "MultiRC/MultiRC"}
#: a field label at the start of a line: one to three words and a colon ("Title:", "candidate answer:")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?: [A-Za-z0-9]+){0,2}:\s*", re.MULTILINE)
_COPA = re.compile(r'^Which sentence is the (?:cause|effect) of "(.*)"\? Choose one between A and B\.', re.MULTILINE)


def strip_template(text: str) -> str:
    """``text`` without its template: field labels at line starts removed, COPA's frame reduced to its
    premise, lines joined by spaces."""
    text = _COPA.sub(r"\1", text)
    text = _LABEL.sub("", text)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _rows(root: Path, name: str) -> tuple[list[dict], list[dict]]:
    folder = Path(root) / SHARED_TASKS[name]
    return tuple(json.loads((folder / f"{split}.json").read_text(encoding="utf-8")) for split in ("train", "test"))


def probe_task(root: Path, name: str, n_train: int = 60, n_test: int = 60, prefixes: bool = False,
               seed: int = 0) -> Task:
    """Shared task ``name`` as a small task: ``n_train`` examples of its train split and ``n_test`` of its
    test split (topped up from unused train rows where the test split is short, as CB's 56), seeded;
    rows without a known label (MNLI's ``-``) are left out."""
    if name not in SHARED_TASKS:
        raise KeyError(f"unknown shared task {name!r} (choose from {', '.join(SHARED_TASKS)})")
    train_rows, test_rows = _rows(root, name)
    labels = sorted({r["label"] for r in train_rows})
    rng = random.Random(f"{seed}:{name}")
    train_rows = [r for r in train_rows if r["label"] in labels]
    test_rows = [r for r in test_rows if r["label"] in labels]
    rng.shuffle(train_rows)
    rng.shuffle(test_rows)
    train, spare = train_rows[:n_train], train_rows[n_train:]
    test = (test_rows + spare)[:n_test]
    text = (lambda s: s) if prefixes else strip_template
    return Task(name=name, instruction="", labels=labels,
                train=[Example(text(r["sentence"]), r["label"]) for r in train],
                test=[Example(text(r["sentence"]), r["label"]) for r in test])


def probe_tasks(root: Path, names=None, **options) -> dict[str, Task]:
    """:func:`probe_task` for each of ``names`` (default: all ten), by name."""
    return {name: probe_task(root, name, **options) for name in (names or SHARED_TASKS)}


def combinations(names, size: int = 3, count: int = 12, seed: int = 0) -> list[tuple[str, ...]]:
    """``count`` distinct seeded combinations of ``size`` of ``names``, each name in at least one."""
    every = list(itertools.combinations(sorted(names), size))
    rng = random.Random(seed)
    while True:
        picked = rng.sample(every, count)
        if set().union(*picked) == set(names):
            return picked

"""An offline generator of text tasks that really interfere with one another.

Every synthetic task shares one vocabulary of *cue* words and *filler* words and one
label set (colours). The label of a sentence is decided by its cue word, through a
mapping that each task rotates differently (``shift``), so a model trained on one task
answers the next task's cues with the wrong colours: sequential training forgets. Each
task also has its own *domain* words (cooking, sailing, ...), which identify the task to
a model that learns to look at them, as real tasks differ in topic.

Options (the ``options:`` mapping of a stream entry): ``domain`` (one of DOMAINS),
``shift`` (int), ``n_train`` (default 600), ``n_test`` (default 200), ``seed``, ``answer``:
``label`` (default: the colour, a classification task) or ``phrase``: a two-word answer,
the colour and the domain word that goes with the cue (``"red oven"``), for generation
tasks (``kind: generation``; the ``demo-gen`` stream). Tasks of other shifts give the
same cue other colours, and each domain its own words, so the phrases conflict.
"""

from __future__ import annotations

import random

from clora.errors import DataError
from clora.data.task import Example

LABELS = ("red", "green", "blue", "yellow")
CUES = ("apple", "river", "stone", "cloud", "lamp", "horse", "violin", "garden")
FILLER = ("the", "a", "today", "again", "very", "quite", "near", "with", "under", "over",
          "old", "new", "small", "large", "quiet", "bright", "slow", "quick", "some", "every",
          "maybe", "later", "there", "here", "still", "just")
DOMAINS = {
    "cooking": ("oven", "recipe", "flour", "simmer", "spoon", "kitchen", "pepper", "bake"),
    "sailing": ("boat", "harbor", "mast", "anchor", "tide", "deck", "sail", "crew"),
    "finance": ("bank", "loan", "stock", "profit", "budget", "invest", "market", "tax"),
    "astronomy": ("planet", "orbit", "comet", "telescope", "galaxy", "star", "moon", "nebula"),
    "medicine": ("doctor", "patient", "fever", "clinic", "dose", "nurse", "vaccine", "pill"),
    "sports": ("goal", "coach", "match", "team", "score", "stadium", "referee", "league"),
}
_KNOWN_OPTIONS = {"domain", "shift", "n_train", "n_test", "seed", "answer"}
ANSWERS = ("label", "phrase")


def cue_label(cue_index: int, shift: int) -> str:
    """The label a task with rotation ``shift`` gives to cue ``cue_index`` (two cues per label)."""
    return LABELS[(cue_index // 2 + shift) % len(LABELS)]


def synthetic_sentence(rng: random.Random, domain: str, shift: int, answer: str = "label") -> Example:
    """One sentence: a cue, two domain words and three to five fillers, shuffled; its target is the cue's
    colour, or (``answer="phrase"``) the colour and the domain word paired with the cue."""
    cue_index = rng.randrange(len(CUES))
    words = [CUES[cue_index], *rng.sample(DOMAINS[domain], 2), *rng.sample(FILLER, rng.randint(3, 5))]
    rng.shuffle(words)
    target = cue_label(cue_index, shift)
    if answer == "phrase":
        target = f"{target} {DOMAINS[domain][cue_index % len(DOMAINS[domain])]}"
    return Example(text=" ".join(words), target=target)


def synthetic_examples(name: str, options: dict, seed: int = 0):
    """``(train, test, labels)`` for a synthetic task; deterministic in (options, seed)."""
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise DataError(f"task {name!r}: unknown synthetic option(s) {', '.join(unknown)}")
    domain = options.get("domain", "cooking")
    if domain not in DOMAINS:
        raise DataError(f"task {name!r}: unknown synthetic domain {domain!r} "
                        f"(choose from {', '.join(DOMAINS)})")
    shift, n_train, n_test = (options.get(k, d) for k, d in (("shift", 0), ("n_train", 600), ("n_test", 200)))
    for key, value in (("shift", shift), ("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or (key != "shift" and value <= 0):
            raise DataError(f"task {name!r}: synthetic option {key} must be a positive integer, got {value!r}")
    answer = options.get("answer", "label")
    if answer not in ANSWERS:
        raise DataError(f"task {name!r}: synthetic option answer must be one of {', '.join(ANSWERS)}, got {answer!r}")
    rng = random.Random(f"{seed}:{options.get('seed', 0)}:{name}:{domain}:{shift}")
    train = [synthetic_sentence(rng, domain, shift, answer) for _ in range(n_train)]
    test = [synthetic_sentence(rng, domain, shift, answer) for _ in range(n_test)]
    return train, test, list(LABELS) if answer == "label" else []

"""Tasks: the unit a stream is made of."""

from __future__ import annotations

from dataclasses import dataclass, field

from clora.errors import DataError

DEFAULT_PROMPT = "{instruction}\nOption: {options}\n{input}\nAnswer:"


@dataclass(frozen=True)
class Example:
    """One input text and its target label."""

    text: str
    target: str


@dataclass
class Task:
    """A named classification data set with an instruction and a label set.

    ``prompt`` is a format string over ``instruction``, ``options`` and ``input`` (the
    O-LoRA prompt by default). Every example's target must be one of ``labels``.
    """

    name: str
    instruction: str
    labels: list[str]
    train: list[Example]
    test: list[Example]
    prompt: str = DEFAULT_PROMPT
    triggers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise DataError("a task needs a non-empty name")
        if not self.train:
            raise DataError(f"task {self.name!r} has no training examples")
        if not self.test:
            raise DataError(f"task {self.name!r} has no test examples")
        if len(self.labels) < 2:
            raise DataError(f"task {self.name!r} needs at least two labels, got {self.labels!r}")
        known = set(self.labels)
        for split, examples in (("train", self.train), ("test", self.test)):
            for ex in examples:
                if ex.target not in known:
                    raise DataError(f"task {self.name!r}: {split} label {ex.target!r} is not in its label "
                                    f"set ({', '.join(self.labels)})")
        try:
            self.format_prompt("x")
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"task {self.name!r}: bad prompt template {self.prompt!r} ({exc})") from None

    def format_prompt(self, text: str) -> str:
        """The model input for ``text``: instruction, options and input in the prompt."""
        options = ", ".join(self.labels)
        return self.prompt.format(instruction=self.instruction, options=options, input=text)

    def label_index(self, target: str) -> int:
        """Index of ``target`` in the label set."""
        return self.labels.index(target)

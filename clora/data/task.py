"""Tasks: the unit a stream is made of."""

from __future__ import annotations

from dataclasses import dataclass, field

from clora.errors import DataError

DEFAULT_PROMPT = "{instruction}\nOption: {options}\n{input}\nAnswer:"
GENERATION_PROMPT = "{instruction}\n{input}\nAnswer:"
#: tokens a generation task answers in, unless it says otherwise (stream, add-task, import, library)
DEFAULT_MAX_NEW_TOKENS = 32
KINDS = ("classification", "generation")
#: how a generation task is scored (clora.evaluation.text_metrics); classification is scored by accuracy
GENERATION_METRICS = ("exact_match", "f1", "rouge_l")


@dataclass(frozen=True)
class Example:
    """One input text and its target label."""

    text: str
    target: str


@dataclass
class Task:
    """A named data set with an instruction: ``classification`` over a label set, or ``generation``.

    ``prompt`` is a format string over ``instruction``, ``options`` and ``input`` (the
    O-LoRA prompt by default; without the options line for generation). A classification
    task's targets must each be one of ``labels``, its metric is ``accuracy``. A generation
    task's targets are free text scored by ``metric`` (``exact_match``, ``f1``, ``rouge_l``;
    ``clora.evaluation.text_metrics``); it has no labels, and its answers are generated
    greedily, up to ``max_new_tokens``.
    """

    name: str
    instruction: str
    labels: list[str]
    train: list[Example]
    test: list[Example]
    prompt: str = DEFAULT_PROMPT
    triggers: dict = field(default_factory=dict)
    kind: str = "classification"
    metric: str = "accuracy"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    @property
    def generative(self) -> bool:
        return self.kind == "generation"

    def __post_init__(self) -> None:
        if not self.name:
            raise DataError("a task needs a non-empty name")
        if not self.train:
            raise DataError(f"task {self.name!r} has no training examples")
        if not self.test:
            raise DataError(f"task {self.name!r} has no test examples")
        if self.kind not in KINDS:
            raise DataError(f"task {self.name!r}: unknown kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.generative:
            self._check_generation()
        else:
            self._check_classification()
        try:
            self.format_prompt("x")
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"task {self.name!r}: bad prompt template {self.prompt!r} ({exc})") from None

    def _check_generation(self) -> None:
        if self.metric == "accuracy":
            self.metric = "exact_match"  # a generation task's default
        if self.metric not in GENERATION_METRICS:
            raise DataError(f"task {self.name!r}: unknown metric {self.metric!r} for a generation task "
                            f"(choose from {', '.join(GENERATION_METRICS)})", field="metric")
        if self.prompt == DEFAULT_PROMPT:
            self.prompt = GENERATION_PROMPT
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise DataError(f"task {self.name!r}: max_new_tokens must be a positive integer, got "
                            f"{self.max_new_tokens!r}", field="max_new_tokens")
        for split, examples in (("train", self.train), ("test", self.test)):
            for ex in examples:
                if not isinstance(ex.target, str) or not ex.target.strip():
                    raise DataError(f"task {self.name!r}: a {split} example has an empty target "
                                    f"(input {ex.text[:40]!r})")

    def _check_classification(self) -> None:
        if self.metric != "accuracy":
            raise DataError(f"task {self.name!r}: metric {self.metric!r} is for generation tasks; a "
                            "classification task is scored by accuracy (or declare kind: generation)",
                            field="metric")
        if len(self.labels) < 2:
            raise DataError(f"task {self.name!r} needs at least two labels, got {self.labels!r}")
        known = set(self.labels)
        for split, examples in (("train", self.train), ("test", self.test)):
            for ex in examples:
                if ex.target not in known:
                    raise DataError(f"task {self.name!r}: {split} label {ex.target!r} is not in its label "
                                    f"set ({', '.join(self.labels)})")

    def format_prompt(self, text: str) -> str:
        """The model input for ``text``: instruction, options and input in the prompt."""
        options = ", ".join(self.labels)
        return self.prompt.format(instruction=self.instruction, options=options, input=text)

    def label_index(self, target: str) -> int:
        """Index of ``target`` in the label set."""
        return self.labels.index(target)

"""The interface every model family implements."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clora.adapters.selection import no_adapters, routed
from clora.config import RunConfig
from clora.data.batches import batches
from clora.data.task import Example, Task
from clora.errors import ConfigError, ModelError
from clora.families.early_exit import hidden_states_at, install_exit_hooks


@dataclass(frozen=True)
class Answer:
    """One answer and the model's own probability of it.

    Classification: the softmax of the task's option scores (the ones the answer is the argmax of)
    at the answer. Generation: the geometric mean of the answer's token probabilities,
    ``exp(mean log p)``, under the same adapters.
    """

    text: str
    probability: float


def option_answer(task: Task, scores: torch.Tensor) -> Answer:
    """The best option of ``task`` for one input's ``scores`` ``(n_labels,)`` and its softmax probability."""
    best = int(scores.argmax())  # of the scores, as before: two close scores may round to equal probabilities
    return Answer(task.labels[best], float(torch.softmax(scores.float(), dim=-1)[best]))


def n_layers(config) -> int:
    """Transformer blocks of a model (of the encoder, for encoder-decoders)."""
    return getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None) or 1


def max_positions(config) -> int | None:
    """The most tokens the model's position embeddings take (None: no fixed limit, e.g. T5's relative ones)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def router_layer(config) -> int:
    """The layer whose output the router reads: half way up, ``ceil(L / 2)`` of ``L`` layers (3 of MiniLM's 6)."""
    return max(1, -(-n_layers(config) // 2))


class Family:
    """Turns a task's examples into a training loss and predictions for one kind of model.

    A family holds no per-call state: the adapters a call uses come from the caller's
    ``use_adapters`` block, and the batch's token mask is published with ``batch_tokens``
    for the duration of the forward pass. One family serves concurrent calls.
    """

    kind = "?"

    def __init__(self, model, tokenizer, config: RunConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.router_layer = config.router_layer or router_layer(model.config)
        if not 1 <= self.router_layer <= n_layers(model.config):
            raise ConfigError(f"the router layer must be between 1 and {n_layers(model.config)} for this model, "
                              f"got {self.router_layer}", field="router_layer")
        self.router_tokens = config.router_tokens or config.max_length
        positions = max_positions(model.config)
        if positions is not None and config.max_length > positions:
            # checked where runs and readers both build a family: nothing is trained or committed that would
            # fail on the first long input
            raise ConfigError(f"max_length {config.max_length} is beyond the {positions} positions this model has",
                              field="max_length")
        self.device = next(model.parameters()).device
        # a fast tokenizer's padding/truncation state is shared: two threads calling it at
        # once fail ("Already borrowed"). Only tokenizing is serialised, never a forward pass.
        self._tokenizer_lock = threading.Lock()
        install_exit_hooks(self.reader(), n_layers(model.config))

    def reader(self):
        """The module whose blocks the router reads (the encoder of an encoder-decoder)."""
        return self.model

    def tokenize(self, texts, **kwargs):
        """``tokenizer(texts, **kwargs)``, safe to call from several threads."""
        with self._tokenizer_lock:
            return self.tokenizer(texts, **kwargs)

    def loss(self, task: Task, examples: Sequence[Example]) -> torch.Tensor:
        """Scalar training loss on a batch of ``examples`` of ``task``."""
        raise NotImplementedError

    def option_scores(self, task: Task, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), len(task.labels))`` scores; the argmax is the prediction."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, task: Task, texts: Sequence[str]) -> list[str]:
        """The predicted label (or, for a generation task, the generated answer) of each text."""
        return [a.text for a in self.answer(task, texts, probability=False)]

    @torch.no_grad()
    def answer(self, task: Task, texts: Sequence[str], probability: bool = True) -> list[Answer]:
        """Each text's :class:`Answer` (the label or generated text, and its probability) under the caller's
        adapters; ``probability=False``: a generated answer is not scored (its probability is NaN)."""
        if task.generative:
            return self.answer_generated([task] * len(texts), texts, None, probability)
        return [option_answer(task, s) for s in self.option_scores(task, texts)]

    @torch.no_grad()
    def predict_mixed(self, tasks: Sequence[Task], texts: Sequence[str], masks: torch.Tensor) -> list[str]:
        """The answers of :meth:`answer_mixed`, without their probabilities."""
        return [a.text for a in self.answer_mixed(tasks, texts, masks, probability=False)]

    @torch.no_grad()
    def answer_mixed(self, tasks: Sequence[Task], texts: Sequence[str], masks: torch.Tensor,
                     probability: bool = True) -> list[Answer]:
        """One forward pass (one ``generate`` call for generation tasks) for a batch whose inputs belong to
        different tasks and snapshots.

        ``tasks[b]`` is the task input ``b`` is answered as, with the adapters ``masks[b]``
        ``(batch, n_adapters)`` selects. ``probability=False``: generated answers are not scored.
        """
        out: list[Answer] = [Answer("", 0.0)] * len(texts)
        for generative in (False, True):
            rows = [b for b, t in enumerate(tasks) if t.generative == generative]
            if not rows:
                continue
            part_tasks, part_texts = [tasks[b] for b in rows], [texts[b] for b in rows]
            part_masks = masks[torch.tensor(rows, device=masks.device)]
            if generative:
                answers = self.answer_generated(part_tasks, part_texts, part_masks, probability)
            else:
                scores = self.mixed_option_scores(part_tasks, part_texts, part_masks)
                answers = [option_answer(task, s) for task, s in zip(part_tasks, scores)]
            for b, answer in zip(rows, answers):
                out[b] = answer
        return out

    def answer_generated(self, tasks: Sequence[Task], texts: Sequence[str], masks: torch.Tensor | None,
                         probability: bool = True) -> list[Answer]:
        """Generated answers with their mean token probability (``AnswerFamily``)."""
        return [Answer(t, float("nan")) for t in self.generate_mixed(tasks, texts, masks)]

    def generate_mixed(self, tasks: Sequence[Task], texts: Sequence[str], masks: torch.Tensor | None) -> list[str]:
        """Greedy answers of generation tasks (``masks`` None: the caller's adapters)."""
        raise ModelError(f"the {self.kind} family cannot generate text; generation tasks need a causal or "
                         "seq2seq model", field="model")

    def mixed_option_scores(self, tasks, texts, masks) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """``(n, hidden)``: the router's input, from the bare base model.

        The unit-norm mean of the hidden states after layer ``router_layer`` (half way
        up) over the first ``router_tokens`` tokens of each input; the layers above do
        not run. On the CL benchmark with MiniLM the task of an input shows more clearly
        in the middle layers than in the last, which a sentence-embedding model tunes for
        meaning rather than source, and 64 tokens tell it almost as well as 128: 98.65%
        of test inputs have the right most likely task after layer 3 of 64 tokens, 98.4%
        of 32 tokens, 99.1% after layer 4 of 128 tokens, 96.3% after the last layer
        (log 15b7361:docs/results.md). 64 is the default because with 32 the wrong most likely tasks
        cost routed accuracy 1.05 points against the oracle, with 64 0.9 (docs/routing.md).
        The short read keeps routing at a fraction of the cost of answering. Unit norm makes
        distances comparable across tasks, which the out-of-distribution check relies on.
        """
        batch = self.tokenize(list(texts), padding=True, truncation=True, max_length=self.router_tokens,
                              return_tensors="pt").to(self.device)
        with no_adapters():
            hidden = self.hidden_states(batch)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def hidden_states(self, batch) -> torch.Tensor:
        """``(n, L, hidden)`` hidden states of the input tokens after layer ``router_layer`` (the layers above it do not run)."""
        return hidden_states_at(self.model, batch, self.router_layer, n_layers(self.model.config))

    @torch.no_grad()
    def router_features(self, texts: Sequence[str]) -> torch.Tensor:
        """``(n, hidden)`` router features of ``texts`` on the CPU, in batches of ``eval_batch_size``."""
        parts = [self.features(list(chunk)).cpu() for chunk in batches(list(texts), self.config.eval_batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    @torch.no_grad()
    def replay(self, task: Task, examples: Sequence[Example]) -> None:
        """Run the training inputs forward once (for activation statistics)."""
        self.loss(task, examples)

    def target_ids(self, target: str) -> list[int]:
        """Token ids of a target answer, ending with EOS so that a label that is a prefix of
        another ("negative" / "very negative") is scored as a complete answer."""
        ids = self.tokenize(target, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return ids + ([eos] if eos is not None else [])


class AnswerFamily(Family):
    """Families that generate the answer (causal, seq2seq): both score ``answer | prompt``.

    Subclasses implement ``answer_logprob(prompts, answers) -> (n,)``, the mean token
    log-likelihood of each answer after its prompt.
    """

    def answer_logprob(self, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, task, examples):
        """Cross-entropy on the answer tokens only."""
        prompts = [task.format_prompt(ex.text) for ex in examples]
        return -self.answer_logprob(prompts, [ex.target for ex in examples]).mean()

    def mixed_option_scores(self, tasks, texts, masks):
        """Every (input, option of its task) pair in one batch, each row routed like its input."""
        prompts, options, owners = [], [], []
        for b, (task, text) in enumerate(zip(tasks, texts)):
            prompt = task.format_prompt(text)
            for label in task.labels:
                prompts.append(prompt)
                options.append(label)
                owners.append(b)
        with routed(masks[torch.tensor(owners, device=masks.device)]):
            logprob = self.answer_logprob(prompts, options)
        return list(torch.split(logprob, [len(t.labels) for t in tasks]))

    @torch.no_grad()
    def generate_mixed(self, tasks, texts, masks):
        """One greedy ``generate`` call over the batch; input ``b`` keeps the adapters ``masks[b]`` selects at
        every decoding step (the KV cache is kept), and stops at EOS or its task's ``max_new_tokens``.

        Greedy answers are prefixes of one another under a longer limit, so the batch runs to the
        largest limit and each answer is cut to its own task's.
        """
        prompts = [task.format_prompt(text) for task, text in zip(tasks, texts)]
        limit = max(task.max_new_tokens for task in tasks)
        if masks is None:
            new_tokens = self.generate_tokens(prompts, limit)
        else:
            with routed(masks):
                new_tokens = self.generate_tokens(prompts, limit)
        return [self.decode_answer(ids[:task.max_new_tokens]) for ids, task in zip(new_tokens, tasks)]

    @torch.no_grad()
    def answer_generated(self, tasks, texts, masks, probability=True):
        """Greedy answers, each with ``exp`` of its mean token log-likelihood after its prompt, scored in one more
        forward pass under the adapters it was generated with (``probability=False``: not scored, NaN)."""
        answers = self.generate_mixed(tasks, texts, masks)
        if not probability:
            return [Answer(a, float("nan")) for a in answers]
        prompts = [task.format_prompt(text) for task, text in zip(tasks, texts)]
        if masks is None:
            logprob = self.answer_logprob(prompts, answers)
        else:
            with routed(masks):
                logprob = self.answer_logprob(prompts, answers)
        return [Answer(a, float(torch.exp(lp))) for a, lp in zip(answers, logprob)]

    def generate_tokens(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """The greedy new token ids of each prompt (up to and without EOS)."""
        raise NotImplementedError

    def decode_answer(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def greedy(self, **inputs) -> torch.Tensor:
        """``model.generate`` greedily (no sampling, one beam), whatever the model's generation config says."""
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return self.model.generate(**inputs, do_sample=False, num_beams=1, pad_token_id=pad,
                                   eos_token_id=tok.eos_token_id, max_length=None)

    def cut_at_eos(self, rows: torch.Tensor) -> list[list[int]]:
        eos = self.tokenizer.eos_token_id
        out = []
        for row in rows.tolist():
            out.append(row[:row.index(eos)] if eos is not None and eos in row else row)
        return out

    def option_scores(self, task, texts):
        """Rank classification: every (text, option) pair scored in one batch."""
        prompts = [task.format_prompt(t) for t in texts for _ in task.labels]
        options = [label for _ in texts for label in task.labels]
        return self.answer_logprob(prompts, options).view(len(texts), len(task.labels))


def masked_mean_logprob(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean log-probability of ``labels`` ``(n, L)`` under ``logits`` ``(n, L, V)`` over ``mask`` ``(n, L)``.

    Returns ``(n,)``. Length-normalised so options with more tokens are not penalised.
    """
    logits = logits.float()
    picked = logits.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    logprob = picked - torch.logsumexp(logits, dim=-1)
    mask = mask.to(logprob.dtype)
    return (logprob * mask).sum(1) / mask.sum(1).clamp_min(1.0)

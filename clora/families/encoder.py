"""Encoder models (BERT, MiniLM): label matching with no per-task heads.

``score(x, option) = cos(pool(f(x)), e_option) / temperature`` and the loss is the
cross-entropy over a task's options. ``pool`` is the attention-masked mean of the last
hidden states (as sentence-transformers pools MiniLM). The label embeddings ``e_option``
are the pooled base-model embeddings of the label texts, computed once per task with
every adapter off: fixed anchors, so a new adapter cannot move an old task's labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clora.adapters.selection import batch_tokens, no_adapters, routed
from clora.families.base import Family


class EncoderFamily(Family):
    kind = "encoder"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._anchors: dict[tuple, torch.Tensor] = {}

    def embed(self, texts) -> torch.Tensor:
        """``(n, hidden)`` unit-norm mean-pooled embeddings of ``texts``."""
        batch = self.tokenize(list(texts), padding=True, truncation=True,
                              max_length=self.config.max_length, return_tensors="pt").to(self.device)
        with batch_tokens(batch["attention_mask"]):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(pooled.float(), dim=-1)

    @torch.no_grad()
    def label_anchors(self, task) -> torch.Tensor:
        """``(n_labels, hidden)``: base-model embeddings of the label texts (cached)."""
        key = tuple(task.labels)
        if key not in self._anchors:
            with no_adapters():
                self._anchors[key] = self.embed(task.labels)
        return self._anchors[key]

    def option_scores(self, task, texts) -> torch.Tensor:
        prompts = [task.format_prompt(t) for t in texts]
        return self.embed(prompts) @ self.label_anchors(task).T / self.config.temperature

    def mixed_option_scores(self, tasks, texts, masks):
        anchors = [self.label_anchors(task) for task in tasks]  # adapters off: before routing
        with routed(masks):
            embedded = self.embed([task.format_prompt(t) for task, t in zip(tasks, texts)])
        return [e @ a.T / self.config.temperature for e, a in zip(embedded, anchors)]

    def loss(self, task, examples) -> torch.Tensor:
        logits = self.option_scores(task, [ex.text for ex in examples])
        targets = torch.tensor([task.label_index(ex.target) for ex in examples], device=logits.device)
        return F.cross_entropy(logits, targets)

"""Causal language models (GPT-2, Llama, Qwen, ...): prompt -> answer tokens.

Training minimises cross-entropy on the answer tokens only. Classification is rank
classification: every option is scored by its mean token log-likelihood after the
prompt and the best one wins (as in the O-LoRA line of work's T5/LLaMA evaluation).
"""

from __future__ import annotations

import torch

from clora.adapters.selection import batch_tokens
from clora.families.base import AnswerFamily, masked_mean_logprob


class CausalFamily(AnswerFamily):
    kind = "causal"

    def _batch(self, prompts, targets):
        """Right-padded ``input_ids``, ``attention_mask`` and a mask of answer positions, ``(n, L)``."""
        tok = self.tokenizer
        prefix = [tok.bos_token_id] if tok.bos_token_id is not None else []
        rows, answer_lengths = [], []
        for prompt, target in zip(prompts, targets):
            answer = self.target_ids(" " + target)
            budget = max(1, self.config.max_length - len(answer) - len(prefix))
            prompt_ids = self.tokenize(prompt, add_special_tokens=False)["input_ids"][-budget:]  # keep the prompt's end
            rows.append(prefix + prompt_ids + answer)
            answer_lengths.append(len(answer))
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        answer_mask = torch.zeros_like(ids)
        for i, (row, n) in enumerate(zip(rows, answer_lengths)):
            ids[i, :len(row)] = torch.tensor(row)
            attention[i, :len(row)] = 1
            answer_mask[i, len(row) - n:len(row)] = 1
        return ids.to(self.device), attention.to(self.device), answer_mask.to(self.device)

    def generate_tokens(self, prompts, max_new_tokens):
        """Greedy new tokens after each prompt, the batch left-padded (``left_padded``)."""
        ids, attention = self.left_padded(prompts)
        out = self.greedy(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens)
        return self.cut_at_eos(out[:, ids.shape[1]:])

    def left_padded(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` ``(n, L)`` as in training (BOS, the prompt's end within
        ``max_length``), padded on the left so that every prompt ends where generation starts."""
        tok = self.tokenizer
        prefix = [tok.bos_token_id] if tok.bos_token_id is not None else []
        budget = max(1, self.config.max_length - len(prefix))
        rows = [prefix + self.tokenize(p, add_special_tokens=False)["input_ids"][-budget:] for p in prompts]
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row)
            attention[i, width - len(row):] = 1
        return ids.to(self.device), attention.to(self.device)

    def answer_logprob(self, prompts, targets) -> torch.Tensor:
        ids, attention, answer_mask = self._batch(prompts, targets)
        with batch_tokens(attention):
            logits = self.model(input_ids=ids, attention_mask=attention).logits
        # position t predicts token t+1
        return masked_mean_logprob(logits[:, :-1], ids[:, 1:], answer_mask[:, 1:])

"""Encoder-decoder models (T5, BART): the encoder reads the prompt, the decoder the answer.

Same objective as the causal family: cross-entropy on the answer tokens, and rank
classification over the options by mean answer log-likelihood.
"""

from __future__ import annotations

import torch

from clora.adapters.selection import batch_tokens
from clora.families.base import AnswerFamily, masked_mean_logprob, n_layers
from clora.families.early_exit import hidden_states_at


class Seq2SeqFamily(AnswerFamily):
    kind = "seq2seq"

    def reader(self):
        return self.model.get_encoder()

    def hidden_states(self, batch) -> torch.Tensor:
        return hidden_states_at(self.model.get_encoder(), batch, self.router_layer, n_layers(self.model.config))

    def generate_tokens(self, prompts, max_new_tokens):
        enc = self.tokenize(list(prompts), padding=True, truncation=True, max_length=self.config.max_length,
                            return_tensors="pt").to(self.device)
        out = self.greedy(**enc, max_new_tokens=max_new_tokens)
        return self.cut_at_eos(out[:, 1:])  # the decoder start token comes first

    def answer_logprob(self, prompts, targets) -> torch.Tensor:
        enc = self.tokenize(list(prompts), padding=True, truncation=True,
                            max_length=self.config.max_length, return_tensors="pt").to(self.device)
        answers = [self.target_ids(t) for t in targets]
        width = max(len(a) for a in answers)
        labels = torch.full((len(answers), width), -100, dtype=torch.long)
        for i, a in enumerate(answers):
            labels[i, :len(a)] = torch.tensor(a)
        labels = labels.to(self.device)
        # the model shifts `labels` right (decoder start token) to build the decoder input
        with batch_tokens(enc["attention_mask"]):
            logits = self.model(**enc, labels=labels).logits
        return masked_mean_logprob(logits, labels, labels >= 0)

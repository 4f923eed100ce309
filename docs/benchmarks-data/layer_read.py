"""A router read over other layers and token counts, for the routing studies in this folder.

``layer_read(family, layers, tokens)(texts)`` is ``(n, 384 * len(layers))`` float64: for each listed
layer the unit-norm mean of the bare base model's hidden states over the first ``tokens`` tokens,
concatenated. ``batch``: inputs per forward pass (``None``: all at once).
"""
import torch

from clora.adapters import no_adapters


def layer_read(family, layers, tokens, batch=None):
    def features(texts):
        texts, out = list(texts), []
        step = batch or max(len(texts), 1)
        for i in range(0, len(texts), step):
            b = family.tokenize(texts[i:i + step], padding=True, truncation=True, max_length=tokens,
                                return_tensors="pt")
            with no_adapters(), torch.no_grad():
                hidden = family.model(**b, output_hidden_states=True).hidden_states
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.cat([torch.nn.functional.normalize((hidden[l] * m).sum(1) / m.sum(1), dim=-1)
                                  for l in layers], -1))
        return torch.cat(out).double()
    return features

"""An int8 base layer applied weight-only: weights stored in int8, activations never quantized.

bitsandbytes loads an int8 base (``Linear8bitLt``) with LLM.int8's storage (Dettmers et al. 2022): one
int8 code per weight and one absmax scale per output row, ``W ~= q * s / 127``. Its matmul then quantizes
the *activations* too (row-wise, in fp16, outliers above a threshold kept apart). Measured on MiniLM
(docs/quantization.md), that activation rounding, not the weights', is what costs an adapter trained on an
int8 base: the adapters' gradients are 17% off those on the full-precision base with LLM.int8's matmul and
8% off with the same int8 weights applied in fp32. So clora keeps bitsandbytes' codes and scales and
applies them the way QLoRA applies NF4 (dequantize, then multiply in the compute dtype), as torchao's
int8 weight-only layers do. Memory at rest is bitsandbytes' (one byte a weight); the fp32 weight of a
layer exists only while that layer multiplies, also in the backward pass (it is not saved for it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Int8Linear", "dequantize_int8", "to_weight_only"]


def dequantize_int8(codes: torch.Tensor, row_scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``codes * row_scale / 127`` in ``dtype``: ``(d_out, d_in)`` from int8 ``(d_out, d_in)`` codes and
    ``(d_out,)`` absmax scales (LLM.int8's vector-wise weight quantization)."""
    return codes.to(dtype) * (row_scale.to(dtype) / 127).unsqueeze(1)


class _WeightOnlyMatmul(torch.autograd.Function):
    """``x @ W.T`` with ``W`` dequantized in the forward and again in the backward, so that the graph keeps
    the int8 codes, not an fp32 copy of every layer's weight."""

    @staticmethod
    def forward(ctx, x, codes, row_scale):
        ctx.save_for_backward(codes, row_scale)
        return F.linear(x, dequantize_int8(codes, row_scale, x.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        codes, row_scale = ctx.saved_tensors
        return grad_out @ dequantize_int8(codes, row_scale, grad_out.dtype), None, None


class Int8Linear(nn.Linear):
    """A linear layer with int8 ``weight`` ``(d_out, d_in)`` and fp32 ``SCB`` ``(d_out,)`` (bitsandbytes'
    names, so a library's fingerprint reads the same bytes), computing in the input's dtype."""

    def __init__(self, codes: torch.Tensor, row_scale: torch.Tensor, bias: torch.Tensor | None):
        nn.Module.__init__(self)  # nn.Linear's own init would allocate a float weight first
        if codes.dtype != torch.int8 or codes.dim() != 2 or row_scale.shape != (codes.shape[0],):
            raise ValueError(f"int8 codes (d_out, d_in) and (d_out,) scales expected, got {tuple(codes.shape)} "
                             f"{codes.dtype} and {tuple(row_scale.shape)}")
        self.out_features, self.in_features = codes.shape
        self.weight = nn.Parameter(codes, requires_grad=False)
        self.register_buffer("SCB", row_scale.float())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    @classmethod
    def from_bitsandbytes(cls, layer: nn.Module) -> "Int8Linear":
        """The same codes and scales as bitsandbytes' ``Linear8bitLt`` ``layer`` (no copy of the codes).

        bitsandbytes keeps the scales on the weight until the layer's first forward pass, then on its state.
        """
        scales = layer.weight.SCB if getattr(layer.weight, "SCB", None) is not None else layer.state.SCB
        return cls(layer.weight.data, scales, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _WeightOnlyMatmul.apply(x, self.weight, self.SCB)
        return y if self.bias is None else y + self.bias.to(y.dtype)


def to_weight_only(model: nn.Module) -> int:
    """Replace every bitsandbytes ``Linear8bitLt`` in ``model`` by an ``Int8Linear`` with the same codes;
    returns how many were replaced."""
    swaps = [(name, module) for name, module in model.named_modules() if type(module).__name__ == "Linear8bitLt"]
    for name, module in swaps:
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        setattr(owner, leaf, Int8Linear.from_bitsandbytes(module))
    return len(swaps)

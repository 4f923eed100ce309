"""Quantized base models (QLoRA, Dettmers et al. 2023): the base's linear layers in 8 or 4 bits, adapters in fp32.

The quantization itself is bitsandbytes' (``Linear8bitLt``: LLM.int8, Dettmers et al. 2022;
``Linear4bit`` with NF4 blocks), applied by transformers while it loads the checkpoint, so a
model that fits only quantized is never held in full precision. Both are applied weight-only:
NF4 by bitsandbytes itself, int8 by ``clora.families.int8_linear`` (LLM.int8's matmul also rounds
the activations, which measurably costs the adapters trained on it). bitsandbytes was chosen by
measurement on the CPU (docs/quantization.md): it is the one library that gives both 8 and 4 bits
on a CPU and on a GPU, and its NF4 is QLoRA's; PEFT and vLLM load the same layers.

A library records its base's quantization and two fingerprints: the weights as loaded (checked
by default) and the weights *outside* the linear layers (embeddings, norms, biases), which do not
depend on the quantization: they are what is checked when a user asks for another one.
"""

from __future__ import annotations

import hashlib

import torch

from clora.config import QUANTIZATIONS, check_quantize_name
from clora.errors import ModelError

__all__ = ["QUANTIZATIONS", "check_quantize_name", "linear_weight_bytes", "loading_config", "outside_linear_fingerprint",
           "quantization_of"]


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise ModelError("a quantized base needs bitsandbytes (pip install 'clora[quantize]')",
                         field="quantize") from None
    return bitsandbytes


def loading_config(name: str, compute_dtype: torch.dtype = torch.float32):
    """The transformers ``BitsAndBytesConfig`` for ``name`` (``int8`` or ``nf4``), or None for ``none``.

    NF4 computes in ``compute_dtype`` (the run's precision); the 4-bit blocks' scales are themselves
    quantized (QLoRA's double quantization), which saves about 0.4 bits per weight.
    """
    check_quantize_name(name)
    if name == "none":
        return None
    _bitsandbytes()
    from transformers import BitsAndBytesConfig

    if name == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def quantization_of(model: torch.nn.Module) -> str:
    """``none``, ``int8`` or ``nf4``: how ``model``'s linear layers are stored. ModelError for a
    quantization clora does not adapt (bitsandbytes' fp4, or another library's layers)."""
    kinds = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, torch.nn.Linear) or weight is None or weight.dtype.is_floating_point:
            continue
        name = type(module).__name__
        quant_type = getattr(getattr(weight, "quant_state", None), "quant_type", None) or getattr(weight, "quant_type", None)
        if name in ("Linear8bitLt", "Int8Linear"):
            kinds.add("int8")
        elif name == "Linear4bit" and quant_type == "nf4":
            kinds.add("nf4")
        else:
            raise ModelError(f"the model's layer {name} ({weight.dtype}) is quantized in a way clora does not adapt "
                             "(bitsandbytes int8 or nf4 only)", field="model")
    if len(kinds) > 1:
        raise ModelError(f"the model mixes quantizations ({', '.join(sorted(kinds))})", field="model")
    return kinds.pop() if kinds else "none"


def _is_linear_weight(key: str, linear_names: set[str]) -> bool:
    owner, _, leaf = key.rpartition(".")
    while owner and owner not in linear_names:  # bitsandbytes keeps state under ``<layer>.weight.<part>``
        owner, _, leaf = owner.rpartition(".")
    return bool(owner) and leaf != "bias" and not key.endswith(".bias")


def _linear_names(model: torch.nn.Module) -> set[str]:
    """Names of the modules a quantization may replace: linear layers, and GPT-2's Conv1D (which bitsandbytes
    loads as a linear layer)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - very old transformers
        Conv1D = ()
    return {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}


def outside_linear_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the model's tensors that no quantization changes: everything but its linear layers'
    weights (and their quantization state). The same for a model loaded in fp32, int8 or nf4."""
    linear_names = _linear_names(model)
    linear_names |= {n.replace(".base", "") for n in list(linear_names) if n.endswith(".base")}
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        key = key.replace(".base.", ".")
        if ".adapters." in key or _is_linear_weight(key, linear_names):
            continue
        tensor = tensor.detach().cpu().contiguous().float()  # loading may keep norms in another dtype
        digest.update(f"{key}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def linear_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes the linear layers' weights take as stored (with their quantization state)."""
    linear_names = _linear_names(model)
    return sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
               if ".adapters." not in k and _is_linear_weight(k, linear_names) and isinstance(t, torch.Tensor))

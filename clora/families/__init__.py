"""Model families: encoder (label matching), causal LM and seq2seq (rank classification)."""

from __future__ import annotations

from clora.families.base import AnswerFamily, Family
from clora.families.causal import CausalFamily
from clora.families.encoder import EncoderFamily
from clora.families.seq2seq import Seq2SeqFamily

FAMILIES = {"encoder": EncoderFamily, "causal": CausalFamily, "seq2seq": Seq2SeqFamily}

# LoRA on the attention query and value projections, as LoRA and O-LoRA do.
DEFAULT_TARGETS = {
    "bert": ("query", "value"), "roberta": ("query", "value"), "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"), "distilbert": ("q_lin", "v_lin"),
    "gpt2": ("c_attn",), "gpt_neox": ("query_key_value",),
    "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"), "gemma": ("q_proj", "v_proj"), "opt": ("q_proj", "v_proj"),
    "phi": ("q_proj", "v_proj"), "t5": ("q", "v"), "mt5": ("q", "v"), "bart": ("q_proj", "v_proj"),
}

_CAUSAL_TYPES = {"gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma", "opt", "phi", "gptj", "bloom"}


def family_of(config) -> str:
    """``encoder``, ``causal`` or ``seq2seq`` from a transformers model config."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = getattr(config, "architectures", None) or []
    if config.model_type in _CAUSAL_TYPES or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    return "encoder"


def check_answers(kind: str, tasks) -> None:
    """Generation tasks need a model that generates: the encoder family is refused, naming the tasks."""
    generative = [t.name for t in tasks if getattr(t, "generative", False)]
    if generative and kind == "encoder":
        from clora.errors import ModelError

        raise ModelError(f"generation task(s) {', '.join(generative)} need a causal or seq2seq model; this one is an "
                         "encoder (it can only classify)", field="model")


__all__ = ["check_answers", "AnswerFamily", "Family", "FAMILIES", "DEFAULT_TARGETS", "family_of",
           "EncoderFamily", "CausalFamily", "Seq2SeqFamily"]

"""Tiny random models of each family, built from configs in-process (no network).

Each is saved with a word-level tokenizer over the synthetic tasks' words to a folder,
so tests and benchmarks load it through the same ``from_pretrained`` code users hit.
The tests use the smallest size (hidden 32, 2 layers); the speed benchmarks a larger one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clora.data.synthetic import CUES, DOMAINS, FILLER, LABELS

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"]
PROMPT_WORDS = ["Which", "colour", "does", "this", "note", "signal", "Option", "Answer", ":", ",", "?",
                "kitchen", "harbour", "market", "sky", "topic", "is", "it", "yes", "no", "pos", "neg"]
FAMILY_OF_KIND = {"bert": "encoder", "gpt2": "causal", "llama": "causal", "t5": "seq2seq"}


def vocabulary() -> dict[str, int]:
    words = list(dict.fromkeys(SPECIALS + PROMPT_WORDS + list(LABELS) + list(CUES) + list(FILLER)
                               + [w for ws in DOMAINS.values() for w in ws]))
    return {w: i for i, w in enumerate(words)}


def make_tokenizer(kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]")
    if kind == "t5":
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")


def make_model(kind: str, seed: int = 0, hidden: int = 32, layers: int = 2):
    """A random ``bert``, ``gpt2``, ``llama`` or ``t5`` of width ``hidden`` (heads of 16 dims) and depth ``layers``."""
    import transformers as tf

    torch.manual_seed(seed)
    v = vocabulary()
    size, heads, ff = len(v), max(2, hidden // 16), 2 * hidden
    if kind == "bert":
        cfg = tf.BertConfig(vocab_size=size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=ff, max_position_embeddings=128, pad_token_id=v["[PAD]"])
        return tf.BertModel(cfg)
    if kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=size, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=128,
                            bos_token_id=v["<s>"], eos_token_id=v["</s>"], pad_token_id=v["[PAD]"])
        return tf.GPT2LMHeadModel(cfg)
    if kind == "llama":
        cfg = tf.LlamaConfig(vocab_size=size, hidden_size=hidden, intermediate_size=ff, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=128,
                             bos_token_id=v["<s>"], eos_token_id=v["</s>"], pad_token_id=v["[PAD]"])
        return tf.LlamaForCausalLM(cfg)
    if kind == "t5":
        cfg = tf.T5Config(vocab_size=size, d_model=hidden, d_kv=16, d_ff=ff, num_layers=layers, num_heads=heads,
                          pad_token_id=v["[PAD]"], eos_token_id=v["</s>"], decoder_start_token_id=v["[PAD]"])
        return tf.T5ForConditionalGeneration(cfg)
    raise ValueError(kind)


def save_tiny(kind: str, folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Save a tiny model of ``kind`` (weights drawn with ``seed``) and its tokenizer to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_model(kind, seed, hidden, layers).save_pretrained(folder)
    make_tokenizer(kind).save_pretrained(folder)
    return folder

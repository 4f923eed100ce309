"""Helpers shared by the speed benchmarks: interleaved timing, medians, a tiny Llama."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions taking turns call by call.

    Taking turns (and rotating who goes first) spreads the machine's noise evenly over
    the contenders, so their ratio is honest even when the absolute times drift.
    """
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(warmup + repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            fns[n]()
            elapsed = time.perf_counter() - started
            if r >= warmup:
                times[n].append(elapsed)
    return times


def median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_json(result: dict, out: Path | None = None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def _word_tokenizer(kind: str):
    """A word-level tokenizer over the synthetic tasks' words (BERT-style or Llama-style specials)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from clora.synthetic import CUES, DOMAINS, FILLER, LABELS

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>", "Which", "colour", "does", "this", "note", "signal",
             "Option", "Answer", ":", ",", "?"] + list(LABELS) + list(CUES) + list(FILLER)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words + [w for ws in DOMAINS.values() for w in ws]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]"), vocab
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>"), vocab


def tiny_model(kind: str, folder: Path, hidden: int = 256, layers: int = 4) -> Path:
    """A small random ``bert`` or ``llama`` (seed 0) with a word-level tokenizer, saved to ``folder``."""
    import transformers as tf

    if (folder / "config.json").is_file():
        return folder
    tokenizer, vocab = _word_tokenizer(kind)
    torch.manual_seed(0)
    if kind == "bert":
        model = tf.BertModel(tf.BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                           num_attention_heads=4, intermediate_size=4 * hidden,
                                           max_position_embeddings=256, pad_token_id=vocab["[PAD]"]))
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(
            vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, bos_token_id=vocab["<s>"],
            eos_token_id=vocab["</s>"], pad_token_id=vocab["[PAD]"]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llama(folder: Path) -> Path:
    return tiny_model("llama", folder)

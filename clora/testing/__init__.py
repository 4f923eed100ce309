"""Tiny random models of each family for tests, examples and benchmarks (no network, no weights).

    from clora.testing import save_tiny
    folder = save_tiny("bert", "tiny-bert")     # bert | gpt2 | llama | t5

Imported by no runtime module of clora.
"""

from clora.testing.tiny_models import FAMILY_OF_KIND, make_model, make_tokenizer, save_tiny, vocabulary

__all__ = ["FAMILY_OF_KIND", "make_model", "make_tokenizer", "save_tiny", "vocabulary"]

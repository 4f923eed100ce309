"""The tests' tiny models live in the library (``clora.tiny_models``), shared with the benchmarks."""

from clora.tiny_models import FAMILY_OF_KIND, make_model, make_tokenizer, save_tiny, vocabulary  # noqa: F401

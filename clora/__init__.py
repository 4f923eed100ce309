"""clora: continual-learning LoRA adapters for Hugging Face transformers models.

The heavy parts (torch, transformers) load on first use, so ``import clora`` and the
CLI's ``--help`` stay fast.
"""

from clora.config import RunConfig
from clora.errors import CloraError

__version__ = "0.1.0"
__all__ = ["CloraError", "RunConfig", "load_library", "run_stream", "__version__"]


def __getattr__(name):
    if name == "run_stream":
        from clora.runner import run_stream

        return run_stream
    if name == "load_library":
        from clora.inference import load_library

        return load_library
    raise AttributeError(f"module 'clora' has no attribute {name!r}")

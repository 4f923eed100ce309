"""How a new adapter is constrained: one file per method, and a registry that names them."""

from clora.methods.base import Method
from clora.methods.registry import METHOD_CLASSES, make_method

__all__ = ["METHOD_CLASSES", "Method", "make_method"]

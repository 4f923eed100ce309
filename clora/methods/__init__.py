"""How a new adapter is constrained: one file per method (and its settings beside it), and a registry.

``Method`` and ``make_method`` load torch, so they are imported on first use: the settings
(``clora.methods.catalog``) stay importable without it.
"""

__all__ = ["METHOD_CLASSES", "Method", "make_method"]


def __getattr__(name):
    if name == "Method":
        from clora.methods.base import Method

        return Method
    if name in ("METHOD_CLASSES", "make_method"):
        from clora.methods import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'clora.methods' has no attribute {name!r}")

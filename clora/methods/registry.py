"""Method names to classes. Only this module knows every method; none of them imports it."""

from __future__ import annotations

import torch

from clora.config import RunConfig
from clora.methods.base import Method
from clora.methods.inc import IncMethod
from clora.methods.mtl import MTLMethod
from clora.methods.olie import OLieMethod
from clora.methods.olora import OLoRAMethod
from clora.methods.orth import OrthMethod
from clora.methods.osf import OSFMethod
from clora.methods.replay import ReplayMethod
from clora.methods.seq import SeqMethod

METHOD_CLASSES: dict[str, type[Method]] = {m.name: m for m in (SeqMethod, IncMethod, OLoRAMethod, OLieMethod,
                                                                OrthMethod, MTLMethod, ReplayMethod,
                                                                OSFMethod)}


def make_method(config: RunConfig, reserved: dict[str, torch.Tensor] | None = None,
                leftover: dict[str, torch.Tensor] | None = None) -> Method:
    """The method named by ``config.method``; ``reserved`` (per module ``(d_in, k)``) is the subspace
    a library already holds and ``leftover`` (per module ``(d_in, n)``) its tasks' leftover energy,
    for methods that keep one (add-task onto a library)."""
    cls = METHOD_CLASSES[config.method]
    return cls(config, reserved=reserved, leftover=leftover) if cls.uses_subspace else cls(config)

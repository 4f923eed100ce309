"""LoRA layers (parameters only), factor sets, the Stiefel manifold and subspace maths.

The bottom of clora: pure functions on tensors and small modules that hold parameters.
Which adapters act on a call is passed with :func:`use_adapters`, never stored on a layer.
"""

from clora.adapters.factor_set import LoRASet
from clora.adapters.lora import Factors, LoRALinear, inject_lora
from clora.adapters.selection import AdapterSelection, no_adapters, routed, use_adapters

__all__ = ["AdapterSelection", "Factors", "LoRALinear", "LoRASet", "inject_lora", "no_adapters", "routed",
           "use_adapters"]

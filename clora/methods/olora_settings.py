"""``olora``'s settings: the weights of O-LoRA's two penalty terms (beside ``clora/methods/olora.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from clora.settings import MethodSettings, check_number, knob


@dataclass(frozen=True)
class OLoRASettings(MethodSettings):
    """O-LoRA (Wang et al., EMNLP 2023 Findings): loss + lambda1 * sum |A_i A_t^T| + lambda2 * L2."""

    method = "olora"
    default_lr = 3e-3

    lambda1: float = knob(0.5, "weight of sum |A_i A_t^T|.")
    lambda2: float = knob(0.0, "weight of the L2 term on new factors.")

    def __post_init__(self) -> None:
        for name in ("lambda1", "lambda2"):
            check_number(name, getattr(self, name), allow_zero=True)

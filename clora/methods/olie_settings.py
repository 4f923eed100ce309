"""``olie``'s settings: OLieRA's penalty weight and Taylor order (beside ``clora/methods/olie.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from clora.settings import MethodSettings, check_count, check_number, knob


@dataclass(frozen=True)
class OLieSettings(MethodSettings):
    """OLieRA (arXiv 2509.06100). Its multiplicative update W * (exp(s B A) - 1) is scaled by the weights'
    own entries (|W| ~ 0.05 in MiniLM), so it takes a larger default rate for the same step."""

    method = "olie"
    default_lr = 1e-2

    olie_lambda: float = knob(1e-4, "weight of sum ||E_i E_t^T||_F.")
    taylor_order: int = knob(2, "order of the Taylor exp.")

    def __post_init__(self) -> None:
        check_number("olie_lambda", self.olie_lambda, allow_zero=True)
        check_count("taylor_order", self.taylor_order)

"""``osf``'s settings: the preserved fraction of each weight's singular directions (beside ``osf.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from clora.errors import ConfigError
from clora.settings import MethodSettings, knob


@dataclass(frozen=True)
class OSFSettings(MethodSettings):
    """PEFT's OSF. It trains the weights' own singular vectors and values (full-rank fine-tuning in the
    complement of the preserved directions), so it takes a full fine-tuning rate, not a LoRA one."""

    method = "osf"
    default_lr = 1e-4
    trains_base_weights = True

    osf_preserve: tuple[float, float] = knob(
        (0.3, 0.7), "fraction of each weight's singular directions frozen on the first and on the last task "
                    "(raised linearly in between, as in PEFT's OSF example).")

    def __post_init__(self) -> None:
        try:
            first, last = (float(v) for v in self.osf_preserve)
        except (TypeError, ValueError):
            raise ConfigError(f"osf_preserve must be two fractions (first task, last task), got "
                              f"{self.osf_preserve!r}", field="osf_preserve") from None
        for v in (first, last):
            if not 0.0 < v < 1.0:
                raise ConfigError(f"osf_preserve fractions must be in (0, 1), got {self.osf_preserve!r}",
                                  field="osf_preserve")
        object.__setattr__(self, "osf_preserve", (first, last))  # frozen: the checked pair of floats

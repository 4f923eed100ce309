"""Every method's settings, defined here or imported (which registers them with ``clora.settings``), in the
order the CLI lists the methods. Free of torch: the CLI makes its options from this alone."""

from __future__ import annotations

from dataclasses import dataclass

from clora.methods.olie_settings import OLieSettings
from clora.methods.olora_settings import OLoRASettings
from clora.methods.orth_settings import OrthSettings
from clora.methods.osf_settings import OSFSettings
from clora.methods.replay_settings import ReplaySettings
from clora.settings import MethodSettings


@dataclass(frozen=True)
class SeqSettings(MethodSettings):
    """``seq`` has no knob of its own."""

    method = "seq"


@dataclass(frozen=True)
class IncSettings(MethodSettings):
    """``inc`` has no knob of its own."""

    method = "inc"


@dataclass(frozen=True)
class MTLSettings(MethodSettings):
    """``mtl`` has no knob of its own."""

    method = "mtl"


#: in the order of ``clora.config.METHODS``
SETTINGS = (SeqSettings, IncSettings, OLoRASettings, OLieSettings, OrthSettings, MTLSettings, OSFSettings,
            ReplaySettings)

"""Which torch device a run uses."""

from __future__ import annotations

import os

from clora.config import check_device_name, check_precision_name
from clora.errors import ConfigError


def resolve_precision(name: str, device: str):
    """The base model's dtype: ``auto`` is bf16 on a GPU that supports it, else float32.

    Adapters always train in float32 (the base model's outputs are cast to them and back).
    fp16 needs a GPU: CPUs have no fast fp16 matmuls.
    """
    import torch

    check_precision_name(name)
    on_gpu = device.startswith("cuda")
    if name == "auto":
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    if name == "fp16" and not on_gpu:
        raise ConfigError("precision fp16 needs a GPU (use bf16 or fp32 on the CPU)", field="precision")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible (the launcher's ``LOCAL_RANK`` picks one under
    ``accelerate launch``), else ``cpu``. An explicit device
    that is not there is a ConfigError rather than a crash deep inside the first forward pass.
    """
    import torch  # here, so that checking a config stays free of torch's import time

    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
        return "cpu"
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available (use the device cpu or auto)",
                              field="device")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist ({torch.cuda.device_count()} GPU(s) visible)",
                              field="device")
    return name

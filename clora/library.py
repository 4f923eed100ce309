"""Writing trained adapters and subspaces to a library folder (safetensors + manifest)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from clora.lora import LoRASet

FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_tensors(lora: LoRASet, index: int) -> dict[str, torch.Tensor]:
    """``{"<module>.lora_A": (r, d_in), "<module>.lora_B": (d_out, r)}`` of adapter ``index``."""
    tensors = {}
    for name, (a, b) in lora.factors(index).items():
        tensors[f"{name}.lora_A"] = a.contiguous().cpu()
        tensors[f"{name}.lora_B"] = b.contiguous().cpu()
    return tensors


def write_library(folder: Path, *, model: str, fingerprint: str, kind: str, targets: tuple[str, ...],
                  scaling: float, tasks: list[dict], lora: LoRASet, adapter_of: dict[str, int],
                  bases: dict[str, torch.Tensor]) -> dict:
    """Write ``manifest.json``, ``tasks/<name>/adapter.safetensors`` and ``subspace.safetensors``.

    ``tasks`` are manifest entries (name, method, rank, labels, instruction, snapshot, ...);
    ``adapter_of`` maps a task name to the index of the adapter it trained, for the tasks
    that own one. Returns the manifest.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, index in adapter_of.items():
        rel = f"tasks/{name}/adapter.safetensors"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        save_file(adapter_tensors(lora, index), str(folder / rel), metadata={"task": name})
        files[rel] = sha256_file(folder / rel)
    if bases:
        save_file({k: v.contiguous().cpu() for k, v in bases.items()}, str(folder / "subspace.safetensors"))
        files["subspace.safetensors"] = sha256_file(folder / "subspace.safetensors")
    manifest = {"format_version": FORMAT_VERSION, "base_model": model, "base_fingerprint": fingerprint,
                "family": kind, "target_modules": list(targets), "scaling": scaling,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tasks": [{**t, "adapter": f"tasks/{t['name']}/adapter.safetensors" if t["name"] in adapter_of else None}
                          for t in tasks],
                "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest

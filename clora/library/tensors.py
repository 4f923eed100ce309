"""Adapter factors and reserved subspaces as safetensors files of a library."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from clora.library.layout import LibraryError
from clora.library.manifest import Manifest, on_disk

ADAPTER_FILE = "adapter.safetensors"
SUBSPACE_FILE = "subspace.safetensors"
ROUTER_FILE = "router.safetensors"
#: a task's private adapter (orth's ``private_rank``): the same format as its adapter
PRIVATE_FILE = "private.safetensors"
#: suffix of a module's leftover-energy factor in a subspace file (units of the task's strongest eigenvalue)
LEFTOVER_KEY = ".leftover_top"
#: the suffix of the first attenuation's factors, in units of the cut: no longer read (docs/library-format.md)
OLD_LEFTOVER_KEY = ".leftover"


def _metadata(kind: str, task: str) -> dict[str, str]:
    # one key: safetensors writes several metadata keys in no fixed order, and equal
    # content should give equal bytes (and checksums)
    return {"clora": json.dumps({"kind": kind, "task": task}, sort_keys=True)}


def save_adapter(path: Path, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], task: str) -> None:
    """``{"<module>.lora_A": (r, d_in), "<module>.lora_B": (d_out, r)}`` to ``path``."""
    tensors = {}
    for name, (a, b) in factors.items():
        tensors[f"{name}.lora_A"] = a.detach().float().contiguous().cpu()
        tensors[f"{name}.lora_B"] = b.detach().float().contiguous().cpu()
    save_file(tensors, str(path), metadata=_metadata("adapter", task))


def save_subspace(path: Path, directions: dict[str, torch.Tensor], task: str,
                  leftover: dict[str, torch.Tensor] | None = None) -> None:
    """Per module ``"<module>"``: the ``(d_in, k)`` orthonormal directions ``task`` added to the subspace;
    with ``leftover``, ``"<module>.leftover_top"``: its ``(d_in, m)`` leftover-energy factor (orth's attenuation)."""
    tensors = {n: u.detach().float().contiguous().cpu() for n, u in directions.items()}
    tensors.update({f"{n}{LEFTOVER_KEY}": f.detach().float().contiguous().cpu() for n, f in (leftover or {}).items()})
    save_file(tensors, str(path), metadata=_metadata("subspace", task))


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LibraryError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0][:200]}") from None


def load_adapter(folder: Path, rel: str, modules) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A, B)}`` from a task's adapter file, checked against the model's ``modules``."""
    tensors = _load(Path(folder) / rel)
    factors = {}
    for name in modules:
        a, b = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
        if a is None or b is None:
            raise LibraryError(f"{rel} has no factors for module {name!r}")
        factors[name] = (a, b)
    return factors


def module_dims(manifest: Manifest | dict) -> dict[str, int]:
    """``{module: d_in}`` of the library's adapted modules."""
    manifest = on_disk(manifest)
    return {name: dims["d_in"] for name, dims in manifest["modules"].items()}


def load_directions(folder: Path, rel: str | None, dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """``{module: (d_in, k)}`` a task reserved; ``k = 0`` when it reserved nothing."""
    tensors = _load(Path(folder) / rel) if rel else {}
    directions = {name: tensors.get(name, torch.zeros(d_in, 0)) for name, d_in in dims.items()}
    for name, u in directions.items():
        if u.dim() != 2 or u.shape[0] != dims[name]:
            raise LibraryError(f"{rel}: the directions of {name!r} have shape {tuple(u.shape)}, not ({dims[name]}, k)")
        if not torch.isfinite(u).all():
            raise LibraryError(f"{rel}: the directions of {name!r} hold NaN or infinite values")
    return directions


def load_subspace(folder: Path, manifest: Manifest | dict) -> dict[str, torch.Tensor]:
    """The reserved subspace ``U`` ``(d_in, k)`` per module: every task's and reserved entry's directions."""
    manifest = on_disk(manifest)
    dims = module_dims(manifest)
    bases = {name: torch.zeros(d_in, 0) for name, d_in in dims.items()}
    for entry in manifest["tasks"] + manifest.get("reserved", []):
        if entry.get("subspace"):
            for name, u in load_directions(folder, entry["subspace"], dims).items():
                bases[name] = torch.cat([bases[name], u], dim=1)
    return bases


def load_leftover(folder: Path, manifest: Manifest | dict) -> dict[str, torch.Tensor]:
    """Per module, every task's leftover-energy factor side by side ``(d_in, n)`` (``n = 0``: none stored)."""
    manifest = on_disk(manifest)
    dims = module_dims(manifest)
    factors = {name: torch.zeros(d_in, 0) for name, d_in in dims.items()}
    for entry in manifest["tasks"]:
        tensors = _load(Path(folder) / entry["subspace"]) if entry.get("subspace") else {}
        for name, d_in in dims.items():
            if f"{name}{OLD_LEFTOVER_KEY}" in tensors:
                raise LibraryError(f"{entry['subspace']}: its leftover factors are in the units of an earlier "
                                   "clora's attenuation setting, which this version no longer reads; rebuild the "
                                   "library with this version to add tasks to it")
            f = tensors.get(f"{name}{LEFTOVER_KEY}")
            if f is None:
                continue
            if f.dim() != 2 or f.shape[0] != d_in or not torch.isfinite(f).all():
                raise LibraryError(f"{entry['subspace']}: the leftover factor of {name!r} has shape "
                                   f"{tuple(f.shape)} or non-finite values; expected finite ({d_in}, m)")
            factors[name] = torch.cat([factors[name], f], dim=1)
    return factors


def save_router_stats(path: Path, stats, task: str) -> None:
    """The learned trigger's statistics of one task: ``count`` (1,), ``mean`` (d,), ``scatter`` (d, d),
    ``heldout`` (1,): the calibration ratio of ``clora.routing.calibration``."""
    save_file({k: v.contiguous().cpu() for k, v in stats.to_tensors().items()}, str(path),
              metadata=_metadata("router", task))


def load_router_stats(folder: Path, rel: str | None):
    """A task's ``TaskStats`` or ``None`` when it has none (e.g. an imported adapter)."""
    from clora.routing.lda import TaskStats

    if not rel:
        return None
    tensors = _load(Path(folder) / rel)
    if not {"count", "mean", "scatter"} <= set(tensors) <= {"count", "mean", "scatter", "heldout", "spread"}:
        raise LibraryError(f"{rel} is not a router statistics file")
    for key in ("heldout", "spread"):
        value = tensors.get(key, torch.ones(1))
        if value.shape != (1,) or not bool(torch.isfinite(value).all()) or float(value[0]) <= 0:
            raise LibraryError(f"{rel}: {key} must be one positive number, got {value.tolist()}")
    count, mean, scatter = tensors["count"], tensors["mean"], tensors["scatter"]
    d = mean.shape[0] if mean.dim() == 1 else -1
    if count.shape != (1,) or d < 1 or scatter.shape != (d, d):
        raise LibraryError(f"{rel}: router statistics of shapes count {tuple(count.shape)}, mean {tuple(mean.shape)}, "
                           f"scatter {tuple(scatter.shape)} (need (1,), (d,), (d, d))")
    return TaskStats.from_tensors(tensors)

"""Interchange with PEFT: export a task's snapshot as a PEFT LoRA folder, import one as a task.

A snapshot (adapters 1..i active) is one LoRA of rank ``R = sum r_j``: the A's stacked
``(R, d_in)`` and the B's side by side ``(d_out, R)``, with clora's scale ``s = alpha / r``.
PEFT applies ``(lora_alpha / R) * B A``, so the export sets ``lora_alpha = s * R`` per
module (``rank_pattern`` / ``alpha_pattern`` where a module's rank differs).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from clora.config import check_output_path
from clora.library.layout import LibraryError, check_files, task_by_name
from clora.library.manifest import Manifest, on_disk
from clora.library.tensors import load_adapter

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
TASK_TYPES = {"encoder": None, "causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}
PREFIX = "base_model.model."


def snapshot_factors(folder: Path, manifest: Manifest | dict,
                     task: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A (R, d_in), B (d_out, R))}``: the snapshot ``task`` was learnt in, and its private adapter
    where it has one, as one LoRA (rank ``R``: their ranks summed; exact, the updates add)."""
    manifest = on_disk(manifest)
    entry = task_by_name(manifest, task)
    owners = {t["name"]: t for t in manifest["tasks"] if t.get("adapter")}
    # its private adapter too: the one LoRA that answers the task as the library does
    used = [owners[n]["adapter"] for n in entry["snapshot"] if n in owners] + \
        ([entry["private"]] if entry.get("private") else [])
    problems = check_files(folder, {"files": {rel: manifest["files"].get(rel, "") for rel in used}})
    if problems:  # never ship an adapter that is not the one the library recorded
        raise LibraryError(f"cannot export {task!r}: {problems[0]}")
    parts = [load_adapter(folder, rel, manifest["modules"]) for rel in used]
    if not parts:
        raise LibraryError(f"task {task!r} has no adapter to export")
    return {m: (torch.cat([p[m][0] for p in parts], 0), torch.cat([p[m][1] for p in parts], 1))
            for m in manifest["modules"]}


def export_peft(folder: Path, manifest: Manifest | dict, task: str, out: Path,
                base_model_path: str | None = None) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for ``task``'s snapshot into ``out``.

    ``base_model_path`` is what the config names as the base model (default: the library's name for it).
    """
    manifest = on_disk(manifest)
    out = check_export(manifest, out)
    return write_peft_folder(out, snapshot_factors(folder, manifest, task), manifest, base_model_path)


def check_export(manifest: Manifest | dict, out) -> Path:
    """Refuse an export that cannot be written: an olie library (no additive LoRA form) or an output folder
    that cannot be made or is not empty; returns ``out`` as a Path."""
    manifest = on_disk(manifest)
    if manifest["method"] == "olie":
        raise LibraryError("olie adapters are multiplicative (W * exp(BA)) and have no PEFT LoRA form")
    out = Path(out)
    check_output_path(out, "export folder")
    if out.is_dir() and any(out.iterdir()):
        raise LibraryError(f"export folder {str(out)!r} exists and is not empty", field="out")
    return out


def write_peft_folder(out: Path, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], manifest: Manifest | dict,
                      base_model_path: str | None = None) -> Path:
    """``factors`` ``{module: (A, B)}`` of the library ``manifest`` as a PEFT LoRA folder ``out``."""
    manifest = on_disk(manifest)
    ranks = {m: a.shape[0] for m, (a, _) in factors.items()}
    rank = max(set(ranks.values()), key=list(ranks.values()).count)  # the most common one
    scale = manifest["scaling"]
    transposed = {bool(d.get("fan_in_fan_out")) for d in manifest["modules"].values()}
    config = {"peft_type": "LORA", "task_type": TASK_TYPES[manifest["family"]],
              "base_model_name_or_path": base_model_path or manifest["base_model"],
              "r": rank, "lora_alpha": scale * rank,
              "rank_pattern": {m: r for m, r in ranks.items() if r != rank},
              "alpha_pattern": {m: scale * r for m, r in ranks.items() if r != rank},
              "target_modules": list(manifest["target_modules"]), "fan_in_fan_out": transposed == {True},
              "bias": "none", "lora_dropout": 0.0, "use_rslora": False, "use_dora": False,
              "modules_to_save": None, "init_lora_weights": True, "inference_mode": True}
    tensors = {}
    for m, (a, b) in factors.items():
        tensors[f"{PREFIX}{m}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{m}.lora_B.weight"] = b.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / PEFT_WEIGHTS), metadata={"format": "pt"})
    (out / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank/alpha pattern lookup: a key matches a module name ending in it."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def read_peft_config(path: Path) -> dict:
    config_path = Path(path) / PEFT_CONFIG
    if not config_path.is_file():
        raise LibraryError(f"{str(path)!r} is not a PEFT adapter folder (no {PEFT_CONFIG})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LibraryError(f"{str(config_path)!r} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise LibraryError(f"{str(config_path)!r} is not a JSON object")
    unsupported = [k for k, ok in (("peft_type", config.get("peft_type") == "LORA"),
                                   ("use_dora", not config.get("use_dora")), ("bias", config.get("bias", "none") == "none"),
                                   ("modules_to_save", not config.get("modules_to_save"))) if not ok]
    if unsupported:
        raise LibraryError(f"{str(path)!r}: only plain LoRA adapters can be imported (unsupported: {', '.join(unsupported)})")
    return config


def check_factors(module: str, a: torch.Tensor, b: torch.Tensor, dims: dict) -> None:
    """Refuse factors that could not be loaded into the library's model: ``A`` ``(r, d_in)``, ``B``
    ``(d_out, r)`` of the same ``r``, finite values."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != dims["d_in"] or b.shape[0] != dims["d_out"] \
            or a.shape[0] != b.shape[1] or a.shape[0] < 1:
        raise LibraryError(f"module {module!r}: factors of shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit "
                           f"(need A (r, {dims['d_in']}) and B ({dims['d_out']}, r) of one rank r)")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise LibraryError(f"module {module!r}: the factors hold NaN or infinite values")


def peft_factors(path: Path, modules: dict, scaling: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A, B)}`` of a PEFT LoRA folder, B rescaled so that clora's ``scaling`` gives PEFT's update."""
    config = read_peft_config(path)
    weights = Path(path) / PEFT_WEIGHTS
    if not weights.is_file():
        raise LibraryError(f"{str(path)!r} has no {PEFT_WEIGHTS}")
    try:
        stored = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        reason = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LibraryError(f"cannot read {str(weights)!r}: {reason}") from None
    tensors = {re.sub(r"\.lora_([AB])\.[^.]+\.weight$", r".lora_\1.weight", k): v for k, v in stored.items()}
    found = {k[len(PREFIX):].rsplit(".lora_", 1)[0] for k in tensors if k.startswith(PREFIX)}
    if found != set(modules):
        extra, missing = sorted(found - set(modules)), sorted(set(modules) - found)
        raise LibraryError(f"the PEFT adapter adapts other modules than the library "
                           f"(only in PEFT: {', '.join(extra) or 'none'}; only in the library: {', '.join(missing) or 'none'})")
    factors = {}
    for m in modules:
        a, b = tensors[f"{PREFIX}{m}.lora_A.weight"], tensors[f"{PREFIX}{m}.lora_B.weight"]
        if not (a.is_floating_point() and b.is_floating_point()):
            raise LibraryError(f"module {m!r}: factors of dtype {a.dtype} and {b.dtype}; LoRA factors are floating point")
        a, b = a.float(), b.float()
        check_factors(m, a, b, modules[m])
        r = _pattern_value(config.get("rank_pattern") or {}, m, config.get("r"))
        alpha = _pattern_value(config.get("alpha_pattern") or {}, m, config.get("lora_alpha"))
        if isinstance(r, bool) or not isinstance(r, int) or r < 1 or isinstance(alpha, bool) \
                or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise LibraryError(f"{str(path)!r}: rank {r!r} and lora_alpha {alpha!r} of module {m!r} must be a "
                               "positive integer and a finite number")
        peft_scale = alpha / (r ** 0.5 if config.get("use_rslora") else r)
        factors[m] = (a, b * (peft_scale / scaling))
        if not torch.isfinite(factors[m][1]).all():  # a scale that overflows the factors (lora_alpha 1e308)
            raise LibraryError(f"module {m!r}: lora_alpha {alpha!r} scales the factors beyond float32's range")
    return factors

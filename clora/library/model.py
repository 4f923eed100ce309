"""A base model with a library's adapters attached, ready to evaluate, train or export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clora.config import RunConfig
from clora.families import FAMILIES, Family
from clora.library.build import LIBRARY_SETTINGS
from clora.library.layout import LibraryError, check_files, read_manifest
from clora.library.tensors import attach_adapters
from clora.lora import LoRASet, inject_lora
from clora.models import BaseModel, load_base_model


def library_config(manifest: dict, **overrides) -> RunConfig:
    """A RunConfig with the library's method and settings; ``overrides`` (e.g. epochs, lr) win."""
    settings = {k: v for k, v in manifest["settings"].items() if k in LIBRARY_SETTINGS}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(stream="library", model=manifest["base_model"], method=manifest["method"],
                     targets=tuple(manifest["target_modules"]), **settings)


def check_base_model(manifest: dict, base: BaseModel) -> None:
    """Refuse a base model whose family or weights differ from the library's."""
    if base.kind != manifest["family"]:
        raise LibraryError(f"the library was built on a {manifest['family']} model ({manifest['base_model']}); "
                           f"{base.name!r} is a {base.kind} model")
    found = base.fingerprint
    if found != manifest["base_fingerprint"]:
        raise LibraryError(f"the library was built on base model {manifest['base_model']!r} (weights "
                           f"{manifest['base_fingerprint'][:12]}); {base.name!r} has other weights ({found[:12]})")


@dataclass
class LibraryModel:
    """The base model with every task adapter of a library version loaded (frozen)."""

    folder: Path
    manifest: dict
    config: RunConfig
    base_model: BaseModel
    lora: LoRASet
    family: Family
    index_of: dict[str, int]

    def snapshot(self, task: str) -> list[int]:
        """Adapter indices of the snapshot a task was learnt in."""
        entry = next(t for t in self.manifest["tasks"] if t["name"] == task)
        return [self.index_of[name] for name in entry["snapshot"] if name in self.index_of]

    def activate_task(self, task: str) -> None:
        self.lora.activate(self.snapshot(task))

    def activate_all(self) -> None:
        self.lora.activate(range(len(self.lora)))


def open_library_model(folder: Path, *, model: str | None = None, manifest: dict | None = None,
                       device: str = "cpu", **overrides) -> LibraryModel:
    """Check the library's files, load its base model (or ``model``), refuse other weights, attach adapters."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    problems = check_files(folder, manifest)
    if problems:
        raise LibraryError(f"library {str(folder)!r}: {problems[0]}" + (f" (and {len(problems) - 1} more; run "
                           "clora library verify)" if len(problems) > 1 else ""))
    config = library_config(manifest, **overrides)
    base = load_base_model(model or manifest["base_model"], device=device)
    check_base_model(manifest, base)
    lora = LoRASet(inject_lora(base.model, config.targets, config.rank, config.scaling))
    for name, layer in lora.layers.items():
        expected = manifest.get("modules", {}).get(name)
        if expected and (expected["d_in"], expected["d_out"]) != (layer.d_in, layer.d_out):
            raise LibraryError(f"module {name!r} is {layer.d_out} x {layer.d_in} in this model but "
                               f"{expected['d_out']} x {expected['d_in']} in the library")
        if config.method == "olie":
            layer.taylor_order = config.taylor_order
    if set(lora.layers) != set(manifest.get("modules", lora.layers)):
        raise LibraryError("the model's adapted modules differ from the library's")
    index_of = attach_adapters(lora, folder, manifest)
    family = FAMILIES[base.kind](base.model, base.tokenizer, config, lora.disabled)
    stored = manifest.get("router") or {}
    if stored.get("layer") is not None:
        # read inputs as the stored router statistics were taken: this layer, this many tokens
        # (a library from before the token cap read max_length tokens)
        family.router_layer = stored["layer"]
        family.router_tokens = stored.get("tokens") or config.max_length
    return LibraryModel(folder, manifest, config, base, lora, family, index_of)

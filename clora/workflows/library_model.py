"""A base model with a library's adapters attached, ready to evaluate, train on or answer with."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from clora.adapters import Factors, LoRALinear, LoRASet, inject_lora
from clora.config import MIN_STEPS, RunConfig
from clora.families import FAMILIES, Family
from clora.families.loading import BaseModel, load_base_model
from clora.library.build import LIBRARY_SETTINGS
from clora.library.layout import LibraryError, check_files, load_manifest
from clora.library.manifest import Manifest
from clora.library.tensors import load_adapter
from clora.methods import make_method
from clora.routing.router import SUMMED
from clora.settings import settings_class

log = logging.getLogger(__name__)


def library_config(manifest: Manifest, **overrides) -> RunConfig:
    """A RunConfig with the library's method and settings; ``overrides`` (e.g. epochs, lr) win.

    Stored keys that are neither shared settings nor the method's own (a file from before methods
    owned their settings keeps every method's) are left out, and so are ``null`` values (the first format
    stored one for every setting it did not use): the default holds."""
    shared = {k: v for k, v in manifest.settings.items() if k in LIBRARY_SETTINGS and v is not None}
    # a library from before the step floor trains new small tasks with it too; epochs given are trained exactly
    shared.setdefault("min_steps", MIN_STEPS)
    if overrides.get("epochs") is not None and overrides.get("min_steps") is None:
        shared["min_steps"] = 0
    shared.update({k: v for k, v in overrides.items() if v is not None})
    settings = settings_class(manifest.method).from_dict(manifest.settings, strict=False)
    return RunConfig(stream="library", model=manifest.base_model, method=manifest.method, settings=settings,
                     targets=manifest.target_modules, **shared)


def read_router_inputs_as_stored(config: RunConfig, manifest: Manifest) -> None:
    """Set ``config`` to read inputs as the library's router statistics were taken: this layer, this many
    tokens (a library from before the token cap read ``max_length`` tokens)."""
    layer = manifest.router_setting("layer")
    if layer is not None:
        config.router_layer, config.router_tokens = layer, manifest.router_setting("tokens") or config.max_length


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def check_base_model(manifest: Manifest, base: BaseModel, quantize: str | None = None) -> None:
    """Refuse a base model whose family or weights differ from the library's.

    A base quantized otherwise than the library's is refused too, unless ``quantize`` asked for it: its
    weights outside the linear layers (which no quantization changes) are then checked instead.
    """
    if base.kind != manifest.family:
        raise LibraryError(f"the library was built on {_a(manifest.family)} model ({manifest.base_model}); "
                           f"{base.name!r} is {_a(base.kind)} model", field="model")
    if base.quantization != manifest.quantization:
        _check_other_quantization(manifest, base, quantize)
        return
    found = base.fingerprint
    if found != manifest.base_fingerprint:
        raise LibraryError(f"the library was built on base model {manifest.base_model!r} (weights "
                           f"{manifest.base_fingerprint[:12]}); {base.name!r} has other weights ({found[:12]})",
                           field="model")


def _check_other_quantization(manifest: Manifest, base: BaseModel, quantize: str | None) -> None:
    stored, found = manifest.quantization, base.quantization
    if quantize is None:
        raise LibraryError(f"the library was built on a {stored} base; the model given is {found} (ask for "
                           f"quantize {found!r} to answer on it anyway: outputs then differ from the library's by "
                           "the quantization error)", field="quantize")
    if not manifest.base_quantization:
        raise LibraryError(f"the library predates quantized bases and records no fingerprint to check a {found} "
                           f"base against; load it at quantize {stored!r}", field="quantize")
    if base.outside_linear_fingerprint != manifest.base_quantization.get("outside_linear"):
        raise LibraryError(f"the library was built on base model {manifest.base_model!r}; {base.name!r} has other "
                           "weights (outside its linear layers)", field="model")
    log.warning("the library was built on a %s base and is loaded on a %s one, as asked: its adapters were "
                "trained against other weights, so outputs differ from the library's by the quantization error",
                stored, found)


@dataclass
class LibraryModel:
    """The base model with every task adapter of a library version loaded (frozen)."""

    folder: Path
    manifest: Manifest
    config: RunConfig
    base_model: BaseModel
    lora: LoRASet
    family: Family
    index_of: dict[str, int]
    #: task name -> its private adapter's index (orth's ``private_rank``), attached after every adapter
    private_of: dict[str, int] = field(default_factory=dict)

    def snapshot(self, task: str) -> list[int]:
        """Adapter indices that answer a task: the snapshot it was learnt in, and its private adapter if any."""
        own = [self.private_of[task]] if task in self.private_of else []
        return [self.index_of[name] for name in self.manifest.task(task).snapshot if name in self.index_of] + own

    def all_adapters(self) -> list[int]:
        """Every adapter's index but the private ones (sum mode, and a ``sum`` fallback)."""
        private = set(self.private_of.values())
        return [i for i in range(len(self.lora)) if i not in private]

    def snapshots(self) -> dict[str, list[int]]:
        """``{task: the adapters that answer it}``, and the summed adapters under ``SUMMED`` (a fallback's)."""
        return {**{name: self.snapshot(name) for name in self.manifest.names}, SUMMED: self.all_adapters()}


def _load_factors(lora: LoRASet, folder: Path, rel: str) -> dict:
    factors = load_adapter(folder, rel, lora.layers)
    for name, layer in lora.layers.items():
        a, b = factors[name]
        if a.shape[1] != layer.d_in or b.shape[0] != layer.d_out or a.shape[0] != b.shape[1]:
            raise LibraryError(f"{rel}: factors of {name!r} have shapes {tuple(a.shape)} and "
                               f"{tuple(b.shape)}, which do not fit the model ({layer.d_out} x {layer.d_in})")
    return factors


def attach_adapters(lora: LoRASet, folder: Path, manifest: Manifest) -> tuple[dict[str, int], dict[str, int]]:
    """Append every task's adapter to ``lora`` as frozen factors, then every private adapter;
    ``({task name: adapter index}, {task name: private adapter index})``."""
    index_of, private_of = {}, {}
    for task in manifest.tasks:
        if task.adapter:
            factors = _load_factors(lora, folder, task.adapter)
            index_of[task.name] = lora.add(lambda n, layer: Factors.frozen(*factors[n]))
    for task in manifest.tasks:
        if task.private:
            factors = _load_factors(lora, folder, task.private)
            private_of[task.name] = lora.add(lambda n, layer: Factors.frozen(*factors[n]))
    return index_of, private_of


def _check_modules(lora: LoRASet, manifest: Manifest) -> None:
    for name, layer in lora.layers.items():
        expected = manifest.modules.get(name)
        if expected and (expected["d_in"], expected["d_out"]) != (layer.d_in, layer.d_out):
            raise LibraryError(f"module {name!r} is {layer.d_out} x {layer.d_in} in this model but "
                               f"{expected['d_out']} x {expected['d_in']} in the library")
    if manifest.modules and set(lora.layers) != set(manifest.modules):
        raise LibraryError("the model's adapted modules differ from the library's")


def open_library_model(folder: Path, *, model=None, tokenizer=None, manifest: Manifest | None = None,
                       device: str = "cpu", dtype=None, quantize: str | None = None, **overrides) -> LibraryModel:
    """Check the library's files, load its base model (or ``model``: a name or a model object with its
    ``tokenizer``), refuse other weights, attach the adapters. ``overrides`` change training settings.

    The base is loaded quantized as the library's was (``manifest.quantization``); ``quantize`` asks for
    another (``none``, ``int8``, ``nf4``), and a model object is taken as it is."""
    folder = Path(folder)
    manifest = manifest or load_manifest(folder)
    problems = check_files(folder, manifest)
    if problems:
        raise LibraryError(f"library {str(folder)!r}: {problems[0]}" + (f" (and {len(problems) - 1} more; verify "
                           "the library for the full list)" if len(problems) > 1 else ""))
    config = library_config(manifest, **overrides)
    by_name = model is None or isinstance(model, (str, Path))
    loading = quantize if quantize is not None else (manifest.quantization if by_name else None)
    if quantize is None and by_name and loading != "none":
        log.info("loading the base model %s-quantized, as the library was built", loading)
    base = load_base_model(model if model is not None else manifest.base_model, device=device, dtype=dtype,
                           tokenizer=tokenizer, quantize=loading)
    check_base_model(manifest, base, quantize)
    config.quantize = base.quantization
    taylor_order = make_method(config).taylor_order
    lora = LoRASet(inject_lora(base.model, config.targets, config.rank, config.scaling, taylor_order))
    _check_modules(lora, manifest)
    index_of, private_of = attach_adapters(lora, folder, manifest)
    read_router_inputs_as_stored(config, manifest)
    family = FAMILIES[base.kind](base.model, base.tokenizer, config)
    return LibraryModel(folder, manifest, config, base, lora, family, index_of, private_of)


_SAME_ADAPTATION = ("base_fingerprint", "family", "target_modules", "modules", "method", "scaling")


def can_reuse_base(previous: LibraryModel, manifest: Manifest) -> bool:
    """True when ``manifest`` adapts the same base weights, modules and method as ``previous``."""
    return all(getattr(previous.manifest, k) == getattr(manifest, k) for k in _SAME_ADAPTATION) and \
        previous.manifest.rank == manifest.rank


def _shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that shares every parameter and buffer with it (no weight is copied)."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    shared = copy.deepcopy(model, memo)
    for layer in shared.modules():
        if isinstance(layer, LoRALinear):
            layer.adapters = nn.ModuleList()  # the new version's adapters are attached below
            layer.forget_cached()
    return shared


def reopen_library_model(folder: Path, previous: LibraryModel, manifest: Manifest) -> LibraryModel:
    """The version ``manifest`` of a library, built on the base model ``previous`` already holds.

    Only the new version's files are read and checked; the base model is neither loaded
    nor hashed again (its fingerprint is ``previous``'s). ``previous`` is left as it is, so
    calls still running on it finish undisturbed.
    """
    folder = Path(folder)
    problems = check_files(folder, manifest)
    if problems:
        raise LibraryError(f"library {str(folder)!r}: {problems[0]}")
    config = library_config(manifest, progress=False)
    read_router_inputs_as_stored(config, manifest)
    model = _shared_copy(previous.base_model.model)
    lora = LoRASet({name: model.get_submodule(name) for name in previous.lora.layers})
    index_of, private_of = attach_adapters(lora, folder, manifest)
    base = replace(previous.base_model, model=model, stored_fingerprint=previous.base_model.fingerprint)
    family = FAMILIES[base.kind](model, base.tokenizer, config)
    return LibraryModel(folder, manifest, config, base, lora, family, index_of, private_of)

"""PEFT's Arrow routing over a library's task adapters, to compare with clora's router.

Arrow (Ostapenko et al. 2024, "Towards Modular LLMs by Building and Reusing a Library
of LoRAs"; ``peft.create_arrow_model``) needs no training data: per adapted layer it
takes each adapter's top right singular vector of ``B A`` as the adapter's prototype,
scores every token by ``|<x, prototype>|``, and mixes the top-k adapters' outputs with a
softmax over those scores. It routes per token and per layer and never falls back.

Here every task's own adapter (not its snapshot) goes into one PEFT Arrow model on a
fresh copy of the library's base model, through peft itself. For the comparison each
input also gets *the* task Arrow sends it to: the adapter with the largest mixing
weight averaged over the input's tokens and the adapted layers (read by forward hooks
on peft's Arrow layers, which recompute peft's own coefficients). The input is answered
by the Arrow model in that task's label set.

The hooks are registered once, when the library loads, and write only into the calling
thread's own collector: concurrent ``weights`` calls never see each other's layers, and
a forward pass with no collector open (answering) records nothing.
"""

from __future__ import annotations

import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from clora.errors import ConfigError
from clora.families import FAMILIES
from clora.families.loading import load_base_model
from clora.library.peft_io import write_peft_folder
from clora.library.readers import reading
from clora.library.tensors import load_adapter
from clora.routing.router import Route
from clora.serving.prediction import Prediction, probability_of
from clora.training.devices import resolve_device
from clora.workflows.library_model import check_base_model, library_config


def _peft_arrow():
    try:
        from peft import ArrowConfig, create_arrow_model
        from peft.tuners.lora.arrow import ArrowLoraLinearLayer
    except ImportError:
        raise ConfigError("the arrow router needs peft 0.17 or newer: pip install 'peft>=0.17'", field="router") from None
    return ArrowConfig, create_arrow_model, ArrowLoraLinearLayer


class ArrowLibrary:
    """A library answered through PEFT's Arrow router (``clora predict --router arrow``)."""

    def __init__(self, folder: Path, *, top_k: int = 3, temperature: float = 1.0, device: str = "cpu"):
        arrow_config, create_arrow_model, arrow_layer = _peft_arrow()
        folder, device = Path(folder), resolve_device(device)
        with reading(folder) as manifest, tempfile.TemporaryDirectory(prefix="clora-arrow-") as tmp:
            if manifest.method == "olie":
                raise ConfigError("olie adapters are multiplicative; Arrow mixes additive LoRAs", field="router")
            entries = [t for t in manifest.tasks if t.adapter]
            if not entries:
                raise ConfigError("the library has no task adapters for Arrow to route over", field="router")
            paths = []
            for i, entry in enumerate(entries):
                factors = load_adapter(folder, entry.adapter, manifest.modules)
                paths.append(str(write_peft_folder(Path(tmp) / f"task{i}", factors, manifest)))
            base = load_base_model(manifest.base_model, device=device, quantize=manifest.quantization)
            check_base_model(manifest, base)
            config = arrow_config(top_k=min(top_k, len(paths)), router_temperature=temperature)
            with warnings.catch_warnings():  # transformers deprecations that peft triggers, not the user's concern
                warnings.simplefilter("ignore", FutureWarning)
                self.peft_model = create_arrow_model(base.model, paths, config)
        self.names = [e.name for e in entries]
        self.tasks = {e.name: e.as_task() for e in entries}
        self.tokenizer, self.device = base.tokenizer, device
        self.family = FAMILIES[base.kind](self.peft_model.base_model.model, base.tokenizer,
                                          library_config(manifest, progress=False))
        self._collector = threading.local()  # per thread: (attention mask, list of per-layer weights)
        for layer in self.peft_model.modules():
            if isinstance(layer, arrow_layer):
                layer.register_forward_hook(self._read_coefficients, with_kwargs=True)
        if hasattr(self.family, "label_anchors"):
            with self.peft_model.disable_adapter():  # label anchors from the bare base model, as clora's
                for task in self.tasks.values():
                    self.family.label_anchors(task)

    def _read_coefficients(self, layer, args, kwargs, output) -> None:
        """Forward hook on a peft Arrow layer: its token coefficients, averaged over the input's tokens."""
        open_call = getattr(self._collector, "call", None)
        if open_call is None:  # a pass that is not a weights() call of this thread
            return
        mask, per_layer = open_call
        tok = args[0].reshape(-1, args[0].shape[-1]).to(layer.prototypes.dtype)
        sim = (tok @ layer.prototypes.T).abs()  # peft's scores and top-k softmax, recomputed
        top, idx = torch.topk(sim, layer.top_k, dim=1)
        scores = torch.full_like(sim, float("-inf")).scatter(1, idx, top)
        coeff = torch.softmax(scores / layer.temperature, dim=1).reshape(*args[0].shape[:-1], -1).double()
        if coeff.shape[:2] == mask.shape:  # token positions of the encoder input (not a decoder's)
            per_layer.append((coeff * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0))

    @torch.no_grad()
    def weights(self, texts: Sequence[str]) -> torch.Tensor:
        """``(n, tasks)``: Arrow's mixing weight of each task adapter, averaged over tokens and layers."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                               max_length=self.family.config.max_length).to(self.device)
        per_layer: list[torch.Tensor] = []
        self._collector.call = (batch["attention_mask"].to(torch.float64), per_layer)
        try:
            self.peft_model(**batch)
        finally:
            self._collector.call = None
        return torch.stack(per_layer).mean(0)

    def route(self, texts: Sequence[str]) -> list[Route]:
        """Arrow's task per input (``source`` ``arrow``; confidence: its mean mixing weight)."""
        weights = self.weights(texts)
        best = weights.argmax(dim=1)
        return [Route(self.names[int(b)], float(weights[i, b]), "arrow", guess=self.names[int(b)])
                for i, b in enumerate(best)]

    def predict(self, texts: Sequence[str], mode: str = "routed", task=None) -> list[Prediction]:
        """Each input answered by the Arrow model in the label set of the task Arrow routes it to."""
        if mode != "routed" or task is not None:
            raise ConfigError("the arrow router only routes: use mode routed without a task (or router lda)",
                              field="router")
        routes = self.route(texts)
        answers = [""] * len(texts)
        for name in set(r.task for r in routes):
            rows = [i for i, r in enumerate(routes) if r.task == name]
            for i, answer in zip(rows, self.family.answer(self.tasks[name], [texts[i] for i in rows])):
                answers[i] = answer
        return [Prediction(text, r.task, r.confidence, a.text, r.source, probability_of(a))
                for text, r, a in zip(texts, routes, answers)]

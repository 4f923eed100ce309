"""Quantized base layers (bitsandbytes int8 and nf4, CPU): what clora reads from them.

Each test loads a tiny random bert from a folder, in full precision and quantized, and checks
what the adapters rely on: the weight a quantized layer applies, the fingerprints a library keeps,
the storage the quantization saves, exact orthogonality and mixed batches on top of quantized layers.
"""

import builtins

import pytest
import torch

from clora.adapters import Factors, LoRALinear, inject_lora
from clora.adapters.selection import use_adapters
from clora.config import RunConfig
from clora.errors import ConfigError, ModelError
from clora.families.loading import load_base_model
from clora.families.quantization import linear_weight_bytes, loading_config, quantization_of

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def bases(tiny_model_dirs):
    """``{quantization: BaseModel}`` of the tiny bert, loaded three ways."""
    folder = str(tiny_model_dirs["bert"])
    return {q: load_base_model(folder, quantize=q) for q in ("none", "int8", "nf4")}


def _query(base):
    return base.model.encoder.layer[0].attention.self.query


@pytest.mark.parametrize("q", ["int8", "nf4"])
def test_a_quantized_load_is_quantized_and_says_so(bases, q):
    layer = _query(bases[q])
    assert type(layer).__name__ == {"int8": "Int8Linear", "nf4": "Linear4bit"}[q]
    assert not layer.weight.dtype.is_floating_point
    assert bases[q].quantization == quantization_of(bases[q].model) == q
    assert bases["none"].quantization == "none"


@pytest.mark.parametrize("q, tolerance", [("int8", 0.02), ("nf4", 0.15)])
def test_the_weight_read_from_a_quantized_layer_is_the_one_it_applies(bases, q, tolerance):
    wrapped = LoRALinear(_query(bases[q]), scaling=1.0)
    w = wrapped.weight_out_in()
    assert w.shape == (wrapped.d_out, wrapped.d_in) and w.dtype == torch.float32
    x = torch.randn(5, wrapped.d_in, generator=torch.Generator().manual_seed(0))
    applied = wrapped.base(x) - wrapped.base.bias
    assert torch.allclose(x @ w.T, applied, atol=5e-3 * applied.abs().max().item())
    full = _query(bases["none"]).weight
    error = float((w - full.detach()).norm() / full.detach().norm())
    assert 0 < error < tolerance  # quantized (not the full weight), and close to it
    assert wrapped.weight_out_in() is w  # cached while the weight is unchanged


def test_fingerprints_tell_quantizations_apart_but_not_the_weights_outside_linear_layers(bases):
    full = {q: b.fingerprint for q, b in bases.items()}
    assert len(set(full.values())) == 3
    outside = {q: b.outside_linear_fingerprint for q, b in bases.items()}
    assert len(set(outside.values())) == 1
    other = load_base_model(str(bases["none"].model.config._name_or_path))
    with torch.no_grad():
        other.model.embeddings.LayerNorm.weight.add_(1e-3)  # a different model outside the linear layers
    assert other.outside_linear_fingerprint != outside["none"]


def test_quantized_linear_weights_take_one_byte_or_half_a_byte_a_weight(bases):
    params = sum(m.weight.numel() for m in bases["none"].model.modules() if isinstance(m, torch.nn.Linear))
    assert linear_weight_bytes(bases["none"].model) == 4 * params
    int8, nf4 = linear_weight_bytes(bases["int8"].model), linear_weight_bytes(bases["nf4"].model)
    # one byte a weight, plus a float32 scale per output row
    rows = sum(m.out_features for m in bases["int8"].model.modules() if isinstance(m, torch.nn.Linear))
    assert int8 == params + 4 * rows
    layers = sum(isinstance(m, torch.nn.Linear) for m in bases["nf4"].model.modules())
    state = bases["nf4"].model.state_dict()
    assert state["encoder.layer.0.attention.self.query.weight"].numel() == 32 * 32 // 2  # two codes a byte
    blocks = sum(t.numel() for k, t in state.items() if k.endswith(".weight.absmax"))
    assert blocks == params // 64  # one 8-bit scale per block of 64 (double quantization)
    fixed = nf4 - params // 2 - blocks
    assert 0 < fixed < 1300 * layers  # per layer, whatever its size: the NF4 code book and its description


@pytest.mark.parametrize("q", ["int8", "nf4"])
def test_orthogonal_adapters_and_mixed_batches_on_quantized_layers(bases, tiny_model_dirs, q):
    base = load_base_model(str(tiny_model_dirs["bert"]), quantize=q)
    layers = inject_lora(base.model, ("query",), rank=2, scaling=2.0)
    layer = next(iter(layers.values()))
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        f = Factors(layer.d_in, layer.d_out, 2, generator=g)
        torch.nn.init.normal_(f.lora_B, generator=g)
        layer.adapters.append(f)
    x = torch.randn(3, 4, layer.d_in, generator=g)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    from clora.adapters.selection import routed

    with routed(mask):
        mixed = layer(x)
    for b, indices in enumerate(([0], [1], [0, 1])):
        with use_adapters(indices):
            alone = layer(x[b:b + 1])
        assert torch.allclose(mixed[b:b + 1], alone, atol=1e-5)
    with use_adapters([]):
        bare = layer(x)
    assert (mixed - bare).abs().max() > 1e-3  # the adapters act on top of the quantized weight


def test_a_method_that_trains_the_base_weights_refuses_a_quantized_base():
    with pytest.raises(ConfigError, match="osf trains the base model's own weights"):
        RunConfig(stream="demo", method="osf", quantize="nf4")
    RunConfig(stream="demo", method="osf", quantize="none")
    with pytest.raises(ConfigError, match="unknown quantization 'int4'"):
        RunConfig(stream="demo", quantize="int4")


def test_a_model_object_is_taken_as_it_is_quantized(bases):
    model, tokenizer = bases["int8"].model, bases["int8"].tokenizer
    assert load_base_model(model, tokenizer=tokenizer).quantization == "int8"
    with pytest.raises(ModelError, match="the model given is quantized int8, but quantize is 'nf4'"):
        load_base_model(model, tokenizer=tokenizer, quantize="nf4")
    with pytest.raises(ModelError, match="the model given is not quantized, but quantize is 'int8'"):
        load_base_model(bases["none"].model, tokenizer=tokenizer, quantize="int8")


def test_without_bitsandbytes_a_quantized_load_is_one_clear_line(monkeypatch):
    real_import = builtins.__import__

    def no_bitsandbytes(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bitsandbytes)
    with pytest.raises(ModelError, match=r"needs bitsandbytes \(pip install 'clora\[quantize\]'\)"):
        loading_config("nf4")
    assert loading_config("none") is None


def test_a_backend_that_cannot_quantize_here_is_one_clear_line(monkeypatch, tiny_model_dirs):
    from transformers import AutoModel

    def no_kernels(*args, **kwargs):
        raise RuntimeError("no kernels for the device 'cpu'\nmore detail")
    monkeypatch.setattr(AutoModel, "from_pretrained", no_kernels)
    with pytest.raises(ModelError, match=r"cannot load model '.*' nf4-quantized on cpu: no kernels for the device 'cpu'$"):
        load_base_model(str(tiny_model_dirs["bert"]), quantize="nf4")
    with pytest.raises(RuntimeError, match="no kernels"):  # a full-precision load's own errors are not renamed
        load_base_model(str(tiny_model_dirs["bert"]))


def test_gpt2s_conv1d_layers_count_as_linear_layers_in_the_fingerprint(tiny_model_dirs):
    folder = str(tiny_model_dirs["gpt2"])
    full, int8 = load_base_model(folder), load_base_model(folder, quantize="int8")
    assert type(full.model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    assert type(int8.model.transformer.h[0].attn.c_attn).__name__ == "Int8Linear"  # bitsandbytes makes it linear
    assert full.outside_linear_fingerprint == int8.outside_linear_fingerprint
    assert full.fingerprint != int8.fingerprint

import pytest
import torch

from clora.adapters import Factors, LoRASet, inject_lora, no_adapters, use_adapters
from clora.errors import ModelError
from clora.families import DEFAULT_TARGETS
from clora.testing import make_model, make_tokenizer


def _inputs(kind):
    tok = make_tokenizer(kind)
    batch = tok(["red apple near the boat", "blue stone"], padding=True, return_tensors="pt")
    if kind == "t5":
        batch["decoder_input_ids"] = torch.tensor([[0, 7, 8], [0, 9, 9]])
    return dict(batch)


def _output(model, inputs):
    out = model(**inputs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") and out.last_hidden_state is not None else out.logits


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "t5"])
def test_zero_init_adapter_leaves_outputs_unchanged(kind):
    model = make_model(kind).eval()
    inputs = _inputs(kind)
    before = _output(model, inputs)
    lora = LoRASet(inject_lora(model, DEFAULT_TARGETS[model.config.model_type], rank=4, scaling=2.0))
    # q and v per attention block; GPT-2 fuses qkv; T5 has encoder, decoder and cross attention
    assert len(lora.layers) == {"bert": 4, "gpt2": 2, "llama": 4, "t5": 12}[kind]
    gen = torch.Generator().manual_seed(0)
    lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, 4, gen))
    with use_adapters([0]):
        with_zero_b = _output(model, inputs)
    with no_adapters():
        assert torch.equal(_output(model, inputs), with_zero_b)  # B = 0 adds exactly nothing
    # Against the unwrapped model: equal up to float rounding (T5's kernels may reorder sums).
    assert torch.allclose(with_zero_b, before, rtol=0, atol=1e-5)
    # a non-zero B does change the outputs (so the adapter is really wired in)
    for layer in lora.layers.values():
        torch.nn.init.normal_(layer.adapters[0].lora_B, std=0.5)
    with use_adapters([0]):
        assert not torch.allclose(_output(model, inputs), before, atol=1e-3)
    # outside a selection the trained B changes nothing: the base model's outputs
    assert torch.allclose(_output(model, inputs), before, rtol=0, atol=1e-5)
    with no_adapters():
        assert torch.allclose(_output(model, inputs), before, rtol=0, atol=1e-5)


def test_lora_forward_matches_merged_weight():
    base = torch.nn.Linear(6, 5)
    model = torch.nn.Sequential(base)
    lora = LoRASet(inject_lora(model, ("0",), rank=2, scaling=3.0))
    a1, b1 = torch.randn(2, 6), torch.randn(5, 2)
    a2, b2 = torch.randn(2, 6), torch.randn(5, 2)
    lora.add(lambda n, layer: Factors.frozen(a1, b1))
    lora.add(lambda n, layer: Factors.frozen(a2, b2))
    x = torch.randn(3, 4, 6)
    merged = base.weight + 3.0 * (b1 @ a1 + b2 @ a2)
    with use_adapters([0, 1]):
        assert torch.allclose(model(x), x @ merged.T + base.bias, atol=1e-5)
        with use_adapters([1]):  # an inner selection wins, and the outer one is back after it
            assert torch.allclose(model(x), x @ (base.weight + 3.0 * b2 @ a2).T + base.bias, atol=1e-5)
        assert torch.allclose(model(x), x @ merged.T + base.bias, atol=1e-5)


def test_gpt2_conv1d_dims_are_read_transposed():
    model = make_model("gpt2")
    layers = inject_lora(model, ("c_attn",), rank=4, scaling=1.0)
    layer = next(iter(layers.values()))
    assert (layer.d_in, layer.d_out) == (32, 96)


def test_injection_freezes_the_base_model():
    model = make_model("bert")
    inject_lora(model, ("query",), rank=2, scaling=1.0)
    assert not any(p.requires_grad for p in model.parameters())


def test_unknown_target_is_a_clear_error():
    with pytest.raises(ModelError, match="target module 'nope' not found"):
        inject_lora(make_model("bert"), ("nope",), rank=2, scaling=1.0)


def test_rank_larger_than_module_allows():
    with pytest.raises(ModelError, match="rank 64 is larger than module"):
        inject_lora(make_model("bert"), ("query",), rank=64, scaling=1.0)


def test_weights_fingerprint_ignores_adapters_but_not_weights():
    from clora.families.loading import weights_fingerprint

    model = make_model("bert")
    before = weights_fingerprint(model)
    lora = LoRASet(inject_lora(model, ("query", "value"), rank=2, scaling=1.0))
    lora.add(lambda n, layer: Factors(layer.d_in, layer.d_out, 2))
    assert weights_fingerprint(model) == before  # wrapping and adapters do not change it
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0, 0] += 1.0
    assert weights_fingerprint(model) != before


def _frozen_and_live(layer, gen):
    """Two frozen adapters with random factors and one live (trainable) adapter on ``layer``."""
    for _ in range(2):
        layer.adapters.append(Factors.frozen(torch.randn(3, layer.d_in, generator=gen),
                                             torch.randn(layer.d_out, 3, generator=gen)))
    live = Factors(layer.d_in, layer.d_out, 3, gen)
    with torch.no_grad():
        live.lora_B.normal_(generator=gen)
    layer.adapters.append(live)
    return live


@pytest.mark.parametrize("base", ["linear", "conv1d"])
def test_folding_frozen_adapters_changes_neither_outputs_nor_gradients(base):
    from transformers.pytorch_utils import Conv1D

    from clora.adapters.lora import LoRALinear

    torch.manual_seed(0)
    base = Conv1D(5, 6) if base == "conv1d" else torch.nn.Linear(6, 5)
    layer, gen = LoRALinear(base, scaling=0.5), torch.Generator().manual_seed(1)
    live = _frozen_and_live(layer, gen)
    x = torch.randn(2, 4, 6, requires_grad=True)
    results = []
    for merge in (True, False):
        layer.merge_frozen = merge
        with use_adapters([0, 1, 2]):
            y = layer(x)
        grads = torch.autograd.grad(y.square().sum(), [x, live.lora_A, live.lora_B])
        results.append((y.detach(), grads))
    (y1, g1), (y0, g0) = results
    # the sum by hand: W x + b + s sum_i B_i A_i x
    a = torch.cat([f.lora_A for f in layer.adapters]).detach()
    b = torch.cat([f.lora_B for f in layer.adapters], dim=1).detach()
    expected = base(x) + 0.5 * x @ (b @ a).T
    assert torch.allclose(y1, expected, atol=1e-5) and torch.allclose(y0, expected, atol=1e-5)
    assert all(torch.allclose(p, q, rtol=1e-5, atol=1e-5) for p, q in zip(g1, g0))


def test_folded_weight_follows_edits_and_replacements():
    from clora.adapters.lora import LoRALinear

    torch.manual_seed(0)
    layer, gen = LoRALinear(torch.nn.Linear(6, 5), scaling=1.0), torch.Generator().manual_seed(1)
    _frozen_and_live(layer, gen)
    x = torch.randn(3, 6)
    with use_adapters([0, 1]):
        first = layer(x)
        assert layer(x) is not first and torch.equal(layer(x), first)  # cached fold, same answer
        with torch.no_grad():
            layer.adapters[0].lora_B.zero_()  # an in-place edit must invalidate the fold
        assert torch.allclose(layer(x), layer.base(x) + x @ (layer.adapters[1].lora_B @ layer.adapters[1].lora_A).T,
                              atol=1e-6)
        layer.adapters[1] = Factors.frozen(torch.zeros(3, 6), torch.zeros(5, 3))  # so must a replacement
        assert torch.allclose(layer(x), layer.base(x), atol=1e-6)

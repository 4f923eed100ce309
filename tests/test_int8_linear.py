"""The int8 base layer clora applies weight-only (``clora.families.int8_linear``): hand-checked numbers,
gradients, what the autograd graph keeps, and the swap from bitsandbytes' layer."""

import pytest
import torch
import torch.nn.functional as F

from clora.families.int8_linear import Int8Linear, dequantize_int8, to_weight_only


def _layer():
    codes = torch.tensor([[127, -64, 0], [1, 2, -127]], dtype=torch.int8)
    return Int8Linear(codes, torch.tensor([0.5, 2.54]), torch.tensor([1.0, -1.0]))


def test_the_weight_is_codes_times_the_row_scale_over_127():
    w = dequantize_int8(_layer().weight, _layer().SCB, torch.float32)
    expected = torch.tensor([[0.5, -64 * 0.5 / 127, 0.0], [0.02, 0.04, -2.54]])
    assert torch.allclose(w, expected, atol=1e-7)


def test_the_forward_is_x_times_the_dequantized_weight_plus_bias_in_full_precision():
    layer = _layer()
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    # row 0: 0.5 - 0.2520 + 0 + 1 = 1.2480; row 1: 0.02 + 0.04 - 2.54 - 1 = -3.48
    y = layer(x)
    assert torch.allclose(y[0], torch.tensor([0.5 - 32 / 127 + 1.0, 0.02 + 0.04 - 2.54 - 1.0]), atol=1e-6)
    assert torch.allclose(y[1], torch.tensor([1.0 + 1.0, 0.04 + 2.54 - 1.0]), atol=1e-6)
    assert y.dtype == torch.float32 and layer(x.double()).dtype == torch.float64  # computes in the input's dtype


def test_the_input_gradient_is_the_dequantized_weights_and_the_codes_get_none():
    layer = _layer()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    g = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    (layer(x) * g).sum().backward()
    w = dequantize_int8(layer.weight, layer.SCB, torch.float32)
    assert torch.allclose(x.grad, g @ w, atol=1e-6)
    assert layer.weight.grad is None and not layer.weight.requires_grad


def test_the_graph_keeps_the_int8_codes_not_a_float_copy_of_the_weight():
    layer = _layer()
    saved = []
    x = torch.randn(4, 3, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x).sum()
    assert not any(t.shape == (2, 3) and t.dtype.is_floating_point for t in saved)
    assert any(t.dtype == torch.int8 for t in saved)


def test_bad_codes_are_one_clear_error():
    with pytest.raises(ValueError, match=r"int8 codes \(d_out, d_in\).*got \(2, 3\) torch.float32"):
        Int8Linear(torch.zeros(2, 3), torch.ones(2), None)
    with pytest.raises(ValueError, match=r"got \(2, 3\) torch.int8 and \(3,\)$"):
        Int8Linear(torch.zeros(2, 3, dtype=torch.int8), torch.ones(3), None)


def test_bitsandbytes_layers_are_swapped_for_the_same_codes_and_applied_without_activation_rounding():
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    full = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    quantized = torch.nn.Sequential(bnb.nn.Linear8bitLt(16, 8, has_fp16_weights=False), torch.nn.ReLU(),
                                    bnb.nn.Linear8bitLt(8, 4, has_fp16_weights=False))
    quantized.load_state_dict(full.state_dict())
    quantized.to("cpu")  # bitsandbytes quantizes on the move to a device
    codes = quantized[0].weight.data
    assert codes.dtype == torch.int8
    quantized(torch.randn(2, 16))  # a forward pass moves bitsandbytes' scales from the weight to its state
    assert quantized[0].weight.SCB is None
    assert to_weight_only(quantized) == 2
    assert isinstance(quantized[0], Int8Linear) and quantized[0].weight.data_ptr() == codes.data_ptr()
    x = torch.randn(5, 16)
    w0 = dequantize_int8(quantized[0].weight, quantized[0].SCB, torch.float32)
    assert float((w0 - full[0].weight).norm() / full[0].weight.norm()) < 0.01  # row-wise absmax int8
    hidden = F.relu(F.linear(x, w0, full[0].bias))
    w2 = dequantize_int8(quantized[2].weight, quantized[2].SCB, torch.float32)
    assert torch.allclose(quantized(x), F.linear(hidden, w2, full[2].bias), atol=1e-6)
    assert to_weight_only(quantized) == 0  # nothing left to swap

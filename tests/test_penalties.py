import pytest
import torch

from clora.adapters import Factors, LoRASet, inject_lora, use_adapters
from clora.adapters.penalties import l2_penalty, olie_factor, olie_penalty, olora_penalty, taylor_exp, taylor_expm1


def test_olora_penalty_sums_absolute_products():
    a1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a2 = torch.tensor([[0.0, -1.0]])
    at = torch.tensor([[1.0, 2.0]])
    # |a1 at^T| = |[1, 2]| -> 3 ; |a2 at^T| = |-2| -> 2
    assert olora_penalty([a1], at).item() == pytest.approx(3.0)
    assert olora_penalty([a1, a2], at).item() == pytest.approx(5.0)
    assert olora_penalty([], at).item() == 0.0
    assert olora_penalty([torch.tensor([[2.0, -1.0]])], at).item() == 0.0  # orthogonal rows


def test_l2_penalty():
    assert l2_penalty([torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0]])]).item() == pytest.approx(9.0)


def test_taylor_exp_by_hand():
    m = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    # order 2: 1 + m + m^2 / 2, elementwise
    assert torch.allclose(taylor_exp(m, 2), torch.tensor([[1.0, 2.5], [5.0, 0.5]]))
    assert torch.allclose(taylor_exp(m, 1), 1 + m)
    assert torch.allclose(taylor_exp(m, 12), m.exp(), atol=1e-6)
    assert torch.equal(taylor_expm1(torch.zeros(2, 2), 3), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        taylor_exp(m, 0)


def test_olie_factor_is_centred():
    b = torch.tensor([[1.0], [0.0]])
    a = torch.tensor([[0.5, 1.0]])
    # s B A = [[1, 2], [0, 0]] -> exp - 1 to order 2: [[1 + 1/2, 2 + 2], [0, 0]]
    assert torch.allclose(olie_factor(b, a, 2.0, 2), torch.tensor([[1.5, 4.0], [0.0, 0.0]]))
    assert torch.equal(olie_factor(torch.zeros(2, 1), a, 2.0, 2), torch.zeros(2, 2))  # B = 0: identity update


def test_olie_penalty_frobenius_of_products():
    e1 = torch.eye(2)
    et = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    # e1 et^T = [[3, 0], [4, 0]] -> ||.||_F = 5
    assert olie_penalty([e1], et).item() == pytest.approx(5.0, abs=1e-5)
    assert olie_penalty([e1, 2 * e1], et).item() == pytest.approx(15.0, abs=1e-5)
    # centred factors of row-disjoint updates are exactly orthogonal ...
    ea = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    eb = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert olie_penalty([ea], eb).item() == pytest.approx(0.0, abs=1e-5)
    # ... while the uncentred exp(.) = 1 + E is positive everywhere and never is
    assert ((1 + ea) @ (1 + eb).T).min() > 0


def test_olie_penalty_gradient_is_finite_at_zero():
    et = torch.zeros(2, 2, requires_grad=True)
    olie_penalty([torch.eye(2)], et).backward()
    assert torch.isfinite(et.grad).all()


def test_multiplicative_layer_matches_hadamard_exp():
    base = torch.nn.Linear(2, 2)
    model = torch.nn.Sequential(base)
    lora = LoRASet(inject_lora(model, ("0",), rank=1, scaling=2.0, taylor_order=2))
    a1, b1 = torch.tensor([[0.5, 1.0]]), torch.tensor([[1.0], [0.0]])
    a2, b2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0], [0.5]])
    lora.add(lambda n, l: Factors.frozen(a1, b1))
    lora.add(lambda n, l: Factors.frozen(a2, b2))
    x = torch.randn(3, 2)
    weight = base.weight * taylor_exp(2.0 * b1 @ a1, 2) * taylor_exp(2.0 * b2 @ a2, 2)
    with use_adapters([0, 1]):
        assert torch.allclose(model(x), x @ weight.T + base.bias, atol=1e-6)

import math

import pytest
import torch

from clora.adapters.subspace import (complement_dim, empty_basis, energy_directions, extend_basis, max_overlap,
                            orthonormal_basis, principal_cosines, project_out, random_complement_frame)


def test_orthonormal_basis_drops_dependent_columns():
    m = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # col 2 = 2 * col 1
    u = orthonormal_basis(m)
    assert u.shape == (3, 2)
    assert torch.allclose(u.T @ u, torch.eye(2), atol=1e-6)


def test_project_out_removes_the_span():
    u = torch.tensor([[1.0], [0.0], [0.0]])
    x = torch.tensor([[3.0], [4.0], [5.0]])
    assert torch.equal(project_out(x, u), torch.tensor([[0.0], [4.0], [5.0]]))
    assert torch.equal(project_out(x, empty_basis(3)), x)


def test_extend_basis_keeps_old_columns_and_skips_known_directions():
    u = torch.tensor([[1.0], [0.0], [0.0]])
    grown = extend_basis(u, torch.tensor([[1.0, 2.0], [1.0, 0.0], [0.0, 0.0]]))
    assert grown.shape == (3, 2)
    assert torch.equal(grown[:, :1], u)
    assert torch.allclose(grown[:, 1].abs(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-7)
    assert extend_basis(grown, torch.tensor([[5.0], [-2.0], [0.0]])).shape == (3, 2)  # already inside


def test_random_complement_frame_is_orthonormal_and_orthogonal():
    u = orthonormal_basis(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))
    frame = random_complement_frame(u, 6, torch.Generator().manual_seed(1))
    assert complement_dim(u) == 6
    assert torch.allclose(frame.T @ frame, torch.eye(6), atol=1e-6)
    assert (u.T @ frame).abs().max() < 1e-6
    with pytest.raises(ValueError):
        random_complement_frame(u, 7)


def test_principal_cosines_of_known_angles():
    a1 = torch.tensor([[1.0, 0.0, 0.0]])
    a2 = torch.tensor([[1.0, 1.0, 0.0]])  # 45 degrees from a1
    assert principal_cosines(a1, a2)[0].item() == pytest.approx(math.cos(math.pi / 4))
    assert principal_cosines(a1, torch.tensor([[0.0, 3.0, 0.0]]))[0].item() == pytest.approx(0.0)
    assert principal_cosines(a1, torch.tensor([[-2.0, 0.0, 0.0]]))[0].item() == pytest.approx(1.0)


def test_max_overlap_over_pairs():
    factors = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 1.0, 1.0]])]
    assert max_overlap(factors) == pytest.approx(math.cos(math.pi / 4))
    assert max_overlap(factors[:1]) is None


def test_energy_directions_follow_gpm_threshold():
    # Energy 6, 3, 1 along e1, e2, e3 (total 10).
    r = torch.diag(torch.tensor([6.0, 3.0, 1.0]))
    first = energy_directions(r, empty_basis(3), 0.5)  # 6/10 >= 0.5 with one direction
    assert first.shape == (3, 1) and abs(first[0, 0].item()) == pytest.approx(1.0)
    two = energy_directions(r, empty_basis(3), 0.85)  # needs 6 + 3 = 9/10
    assert two.shape == (3, 2)
    # With e1 already reserved (captures 6/10), 0.85 needs only e2 more.
    more = energy_directions(r, torch.tensor([[1.0], [0.0], [0.0]]), 0.85)
    assert more.shape == (3, 1) and abs(more[1, 0].item()) == pytest.approx(1.0)
    assert energy_directions(r, torch.tensor([[1.0], [0.0], [0.0]]), 0.55).shape == (3, 0)

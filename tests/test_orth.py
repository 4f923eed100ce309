import json

import geoopt
import pytest
import torch
from conftest import train_factors

from clora.config import RunConfig
from clora.errors import ConfigError
from clora.adapters import LoRASet, inject_lora
from clora.methods.orth import OrthMethod, StiefelFactors
from clora.workflows.run import run_stream
from clora.adapters.subspace import orthonormal_basis


def test_stiefel_factors_stay_orthogonal_to_the_basis_under_training():
    gen = torch.Generator().manual_seed(0)
    basis = orthonormal_basis(torch.randn(12, 5, generator=gen))
    factors = StiefelFactors(basis, d_out=7, rank=3, retraction="cayley", generator=gen)
    train_factors(factors, torch.randn(64, 12, generator=gen), torch.randn(64, 7, generator=gen), steps=50)
    assert factors.lora_B.abs().max() > 0.01  # it did train
    a = factors.factor_a()
    assert (a @ basis).abs().max() < 1e-6  # A U = 0
    frame = factors.x.detach()
    assert torch.allclose(frame.T @ frame, torch.eye(3), atol=1e-5)  # still on the manifold


@pytest.mark.parametrize("retraction", ["cayley", "qr"])
def test_projection_holds_even_if_the_frame_drifts_into_the_basis(retraction):
    basis = torch.eye(6)[:, :2]
    factors = StiefelFactors(basis, d_out=3, rank=2, retraction=retraction)
    with torch.no_grad():
        factors.x.copy_(torch.eye(6)[:, 1:3])  # half inside span(U)
    assert (factors.factor_a() @ basis).abs().max() == 0.0


def _orth_config(**kw):
    return RunConfig(stream="x", method="orth", rank=4, progress=False, **kw)


def test_orth_reduces_rank_when_the_complement_is_small():
    model = torch.nn.Sequential(torch.nn.Linear(6, 6))
    lora = LoRASet(inject_lora(model, ("0",), rank=4, scaling=1.0))
    method = OrthMethod(_orth_config())
    for t in range(2):  # adapters source: each task reserves its rank
        method.begin_task(lora, t)
        method.end_task(lora, t, run_inputs=lambda: None)
    assert lora.factors(1)["0"][0].shape == (2, 6)  # only 6 - 4 = 2 directions were left
    assert any("rank reduced from 4 to 2" in n for n in method.notes)
    with pytest.raises(ConfigError, match="no free directions left"):
        method.begin_task(lora, 2)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "t5"])
def test_orth_overlap_is_zero_for_every_family(kind, tiny_model_dirs, synthetic_stream, tmp_path):
    config = RunConfig(stream=str(synthetic_stream), out=tmp_path / "run", model=str(tiny_model_dirs[kind]),
                       method="orth", rank=4, epochs=1, lr=5e-3, batch_size=8, progress=False)
    report = run_stream(config)
    assert len(report["tasks"]) == 3
    assert report["overlap"] is not None and report["overlap"] <= 1e-5


@pytest.mark.parametrize("source", ["activations", "both"])
def test_activation_subspace_reserves_directions(source, tiny_model_dirs, synthetic_stream, tmp_path):
    config = RunConfig(stream=str(synthetic_stream), out=tmp_path / "run", model=str(tiny_model_dirs["bert"]),
                       method="orth", rank=2, epochs=1, settings={"subspace": source, "energy": 0.5}, progress=False)
    report = run_stream(config)
    used = [m["reserved"] for m in report["subspace"].values()]
    assert all(0 < u < 32 for u in used)
    if source == "both":  # row spaces of earlier A's are reserved too, so adapters are orthogonal
        assert report["overlap"] <= 1e-5


def test_stiefel_frames_step_as_far_as_euclidean_adam():
    from clora.adapters.stiefel import param_groups

    gen = torch.Generator().manual_seed(0)
    factors = StiefelFactors(torch.zeros(64, 0), d_out=16, rank=4, retraction="cayley", generator=gen)
    opt = geoopt.optim.RiemannianAdam(param_groups(list(factors.parameters()), 1e-3), lr=1e-3)
    x0, b0 = factors.x.detach().clone(), factors.lora_B.detach().clone()
    factors.x.grad = torch.randn(64, 4, generator=gen)
    factors.lora_B.grad = torch.randn(16, 4, generator=gen)
    opt.step()
    b_step = (factors.lora_B.detach() - b0).norm().item()  # element-wise Adam: lr * sqrt(64)
    x_step = (factors.x.detach() - x0).norm().item()
    assert b_step == pytest.approx(1e-3 * 8, rel=0.05)
    # the frame now moves on the scale lr * sqrt(64 * 4) = 0.016 (canonical-metric gradient
    # and Cayley retraction change it a little), not on the unscaled scale lr = 0.001
    assert 0.5 * 0.016 < x_step < 1.5 * 0.016


def test_frame_lr_moves_the_frames_and_lr_moves_b():
    from clora.adapters.stiefel import param_groups

    def steps(lr, frame_lr):
        gen = torch.Generator().manual_seed(0)
        factors = StiefelFactors(torch.zeros(64, 0), d_out=16, rank=4, retraction="cayley", generator=gen)
        opt = geoopt.optim.RiemannianAdam(param_groups(list(factors.parameters()), lr, frame_lr), lr=lr)
        x0, b0 = factors.x.detach().clone(), factors.lora_B.detach().clone()
        factors.x.grad = torch.randn(64, 4, generator=gen)
        factors.lora_B.grad = torch.randn(16, 4, generator=gen)
        opt.step()
        return (factors.x.detach() - x0).norm().item(), (factors.lora_B.detach() - b0).norm().item()

    x_same, b_same = steps(1e-3, None)  # None: the frames take lr
    x_slow, b_fast = steps(4e-3, 1e-3)
    assert x_slow == pytest.approx(x_same, rel=1e-5)
    assert b_fast == pytest.approx(4 * b_same, rel=1e-5)


def test_frame_lr_must_be_positive():
    from clora.config import RunConfig
    from clora.errors import ConfigError

    with pytest.raises(ConfigError, match="frame_lr must be positive, got 0.0"):
        RunConfig(stream="demo", settings={"frame_lr": 0.0})
    settings = RunConfig(stream="demo", method="orth", lr=2e-3).settings
    assert settings.frame_lr is None and settings.frame_rate(2e-3) == 2e-3  # the frames follow --lr
    assert RunConfig(stream="demo", settings={"frame_lr": 0.1}).settings.frame_rate(2e-3) == 0.1


def test_low_rank_cayley_step_equals_geoopts_dense_solve():
    import geoopt

    from clora.adapters.stiefel import LowRankCayleyStiefel

    torch.manual_seed(0)
    x = torch.linalg.qr(torch.randn(40, 3, dtype=torch.float64))[0]
    dense, low_rank = geoopt.CanonicalStiefel(), LowRankCayleyStiefel()
    u = dense.proju(x, 0.7 * torch.randn(40, 3, dtype=torch.float64))  # a large step, far from the identity
    moment = torch.randn(40, 3, dtype=torch.float64)
    for a, b in zip(dense.retr_transp(x, u, moment), low_rank.retr_transp(x, u, moment)):
        assert torch.allclose(a, b, atol=1e-12)
    y = low_rank.retr(x, u)
    assert torch.allclose(y.T @ y, torch.eye(3, dtype=torch.float64), atol=1e-12)  # still on the manifold
    assert not torch.allclose(y, x)  # and it moved


def test_linear_frame_schedule_takes_the_frames_rate_to_zero_and_keeps_b():
    from clora.adapters.stiefel import param_groups, schedule_frames

    gen = torch.Generator().manual_seed(0)
    factors = StiefelFactors(torch.zeros(64, 0), d_out=16, rank=4, retraction="cayley", generator=gen)
    opt = geoopt.optim.RiemannianAdam(param_groups(list(factors.parameters()), 2e-3), lr=2e-3)
    start = [g["lr"] for g in opt.param_groups]  # B: 2e-3; frame: 2e-3 * sqrt(64 * 4) = 0.032
    frame = [i for i, g in enumerate(opt.param_groups) if any(p is factors.x for p in g["params"])][0]
    schedule_frames(opt, "constant", 5, 10)
    assert [g["lr"] for g in opt.param_groups] == start
    schedule_frames(opt, "linear", 5, 20)  # a quarter of the way: 3/4 of the rate left
    assert opt.param_groups[frame]["lr"] == pytest.approx(0.032 * 0.75)
    assert opt.param_groups[1 - frame]["lr"] == 2e-3
    schedule_frames(opt, "linear", 20, 20)
    assert opt.param_groups[frame]["lr"] == 0.0
    x0 = factors.x.detach().clone()
    factors.x.grad = torch.randn(64, 4, generator=gen)
    factors.lora_B.grad = torch.randn(16, 4, generator=gen)
    opt.step()
    assert torch.equal(factors.x.detach(), x0)  # rate 0: the frame stays, still on the manifold


def test_frame_schedule_is_checked_and_recorded(tiny_model_dirs, synthetic_stream, tmp_path):
    with pytest.raises(ConfigError, match="unknown frame schedule 'cosine'"):
        RunConfig(stream="demo", settings={"frame_schedule": "cosine"})
    config = RunConfig(stream=str(synthetic_stream), out=tmp_path / "run", model=str(tiny_model_dirs["bert"]),
                       method="orth", rank=2, epochs=1, batch_size=8, settings={"frame_schedule": "linear"}, progress=False)
    report = run_stream(config)
    assert report["settings"]["frame_schedule"] == "linear"
    manifest = json.loads((tmp_path / "run" / "library" / "manifest.json").read_text())
    assert manifest["settings"]["frame_schedule"] == "linear"
    assert report["overlap"] <= 1e-5

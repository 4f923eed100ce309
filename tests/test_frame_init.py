"""orth's frame start along the steepest free directions of the task's loss (``frame_init: gradient``)."""

import pytest
import torch

from clora.adapters import LoRASet, inject_lora
from clora.adapters.gradients import weight_gradients
from clora.adapters.selection import use_adapters
from clora.adapters.subspace import complement_basis, gradient_frame
from clora.config import RunConfig
from clora.errors import ConfigError
from clora.methods.orth import OrthMethod
from clora.workflows.run import run_stream


def _e(d, *i):
    return torch.eye(d)[:, list(i)]


def test_gradient_frame_takes_the_largest_free_singular_directions():
    # dL/dW's largest singular direction is e0, but e0 is reserved: the frame takes e2 (3), then e3 (1)
    gradient = torch.tensor([[0.0, 0.0, 3.0, 0.0], [5.0, 0.0, 0.0, 1.0]])
    basis = _e(4, 0)
    frame = gradient_frame(gradient, basis, rank=1)
    assert torch.allclose(frame.abs(), _e(4, 2))
    frame = gradient_frame(gradient, basis, rank=2)
    assert torch.allclose(frame.abs(), _e(4, 2, 3))
    # with nothing reserved, the top right singular vector of dL/dW itself, (5, 0, 0, 1) / sqrt(26)
    top = torch.tensor([[5.0], [0.0], [0.0], [1.0]]) / 26 ** 0.5
    assert torch.allclose(gradient_frame(gradient, torch.zeros(4, 0), rank=1).abs(), top)


def test_gradient_frame_is_orthonormal_and_orthogonal_even_beyond_the_gradients_rank():
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, 5, generator=gen))
    gradient = torch.randn(2, 16, generator=gen)  # rank 2 < the frame's rank 4
    frame = gradient_frame(gradient, basis, rank=4)
    assert frame.shape == (16, 4)
    assert torch.allclose(frame.T @ frame, torch.eye(4), atol=1e-6)
    assert (basis.T @ frame).abs().max() < 1e-6
    # the gradient's own free directions are inside the frame
    free_grad = gradient.T - basis @ (basis.T @ gradient.T)
    inside = frame @ (frame.T @ free_grad)
    assert torch.allclose(inside, free_grad, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the complement dimension 11"):
        gradient_frame(gradient, basis, rank=12)


def test_complement_basis_completes_the_basis():
    basis = _e(5, 1, 3)
    free = complement_basis(basis)
    assert free.shape == (5, 3)
    full = torch.cat([basis.double(), free], dim=1)
    assert torch.allclose(full.T @ full, torch.eye(5, dtype=torch.float64), atol=1e-12)


def test_weight_gradients_equal_autograd_on_the_weight():
    gen = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    lora = LoRASet(inject_lora(model, ("0", "2"), rank=2, scaling=1.0))
    lora.add(lambda name, layer: __import__("clora.adapters.lora", fromlist=["Factors"]).Factors(
        layer.d_in, layer.d_out, 2, gen))
    x = torch.randn(4, 7, 6, generator=gen)
    target = torch.randn(4, 7, 3, generator=gen)

    def loss():
        return ((model(x) - target) ** 2).mean()

    with use_adapters([0]):
        got = weight_gradients(lora.layers, lambda: loss().backward())
    # reference: the same loss differentiated with respect to the base weights themselves
    for layer in lora.layers.values():
        layer.base.weight.requires_grad_(True)
    with use_adapters([0]):
        loss().backward()
    for name, layer in lora.layers.items():
        assert torch.allclose(got[name].float(), layer.base.weight.grad, atol=1e-6), name


def test_orth_initialise_starts_frames_on_the_gradient_and_leaves_no_gradient():
    gen = torch.Generator().manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    lora = LoRASet(inject_lora(model, ("0",), rank=2, scaling=1.0))
    x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 4, generator=gen)
    run_loss = lambda: ((model(x) - y) ** 2).mean().backward()  # noqa: E731
    method = OrthMethod(RunConfig(stream="x", method="orth", rank=2, settings={"subspace": "adapters"}, progress=False))
    method.begin_task(lora, 0)
    method.end_task(lora, 0, run_inputs=lambda: None)  # reserves task 0's two frame directions
    method.begin_task(lora, 1)
    with use_adapters([0, 1]):
        expected = gradient_frame(weight_gradients(lora.layers, run_loss)["0"], method.bases["0"], 2)
        method.initialise(lora, 1, "generation", run_loss)  # a generation task starts on the gradient
    frame = lora.layers["0"].adapters[1].x.detach()
    assert torch.allclose(frame, expected, atol=1e-6)
    assert (method.bases["0"].T @ frame).abs().max() < 1e-6
    assert all(p.grad is None for p in lora.parameters(1))


def test_random_frame_init_keeps_the_random_start():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    lora = LoRASet(inject_lora(model, ("0",), rank=2, scaling=1.0))
    for config in (RunConfig(stream="x", method="orth", rank=2, settings={"frame_init": "random"}, progress=False),
                   RunConfig(stream="x", method="orth", rank=2, progress=False)):  # a classification task's default
        method = OrthMethod(config)
        index = len(lora)
        method.begin_task(lora, index)
        before = lora.layers["0"].adapters[index].x.detach().clone()
        method.initialise(lora, index, "classification", lambda: pytest.fail("a random start takes no gradient pass"))
        assert torch.equal(lora.layers["0"].adapters[index].x.detach(), before)


def test_frame_init_is_validated():
    with pytest.raises(ConfigError, match="unknown frame init 'svd'"):
        RunConfig(stream="demo", settings={"frame_init": "svd"})


def test_energy_and_frame_start_follow_the_tasks_kind_unless_given():
    from clora.workflows.run import planned

    config = RunConfig(stream="x", method="orth")
    defaults = config.settings
    assert (defaults.energy_for("classification"), defaults.frame_init_for("classification")) == (0.95, "random")
    assert (defaults.energy_for("generation"), defaults.frame_init_for("generation")) == (0.99, "gradient")
    given = RunConfig(stream="x", method="orth", settings={"energy": 0.9, "frame_init": "random"})
    assert (given.settings.energy_for("generation"), given.settings.frame_init_for("generation")) == (0.9, "random")
    # a stream of one kind records that kind's values; a mixed one decides task by task
    one = planned(config, ["generation", "generation"]).settings
    assert (one.energy, one.frame_init, one.capacity_tasks) == (0.99, "gradient", 2)
    mixed = planned(config, ["classification", "generation"]).settings
    assert (mixed.energy, mixed.frame_init) == (None, None)
    assert planned(given, ["generation"]).settings.energy == 0.9


def test_a_generation_task_reserves_at_its_own_energy():
    """Same inputs, two kinds: the generation task (0.99) reserves more directions than the classification one."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 16, generator=gen) * torch.linspace(3.0, 0.1, 16)  # energy spread over many directions
    counts = {}
    for kind in ("classification", "generation"):
        model = torch.nn.Sequential(torch.nn.Linear(16, 4))
        lora = LoRASet(inject_lora(model, ("0",), rank=2, scaling=1.0))
        method = OrthMethod(RunConfig(stream="x", method="orth", rank=2, settings={"subspace": "activations"}, progress=False))
        method.begin_task(lora, 0)
        with use_adapters([0]):
            method.initialise(lora, 0, kind, lambda: ((model(x) ** 2).mean()).backward())
            method.end_task(lora, 0, run_inputs=lambda: model(x))
        counts[kind] = method.reserved_counts()[0]["0"]
    assert counts["classification"] < counts["generation"] < 16


def test_gradient_start_learns_a_first_task_faster(tiny_model_dirs, synthetic_stream, tmp_path):
    """One epoch of the first task: the gradient start ends at a lower training loss than the random one."""
    def final_loss(frame_init):
        config = RunConfig(stream=str(synthetic_stream), out=tmp_path / frame_init, model=str(tiny_model_dirs["llama"]),
                           method="orth", rank=4, epochs=1, batch_size=8, settings={"frame_init": frame_init}, progress=False)
        report = run_stream(config)
        assert report["settings"]["frame_init"] == frame_init
        return report["training"][0]["final_loss"]

    assert final_loss("gradient") < final_loss("random")

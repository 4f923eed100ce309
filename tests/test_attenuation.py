"""orth's scaled projection of earlier tasks' leftover input energy (``--attenuation``)."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import train_factors

from clora.adapters.attenuation import CAP, attenuated_rows, attenuation_directions, importance, leftover_factor
from clora.cli.main import cli
from clora.config import RunConfig
from clora.errors import ConfigError
from clora.library.layout import LibraryError
from clora.library.tensors import load_leftover
from clora.methods.orth import StiefelFactors
from clora.workflows.run import run_stream

R = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))  # energy 0.4, 0.3, 0.2, 0.1
U = torch.eye(4, dtype=torch.float64)[:, :2]  # what energy 0.7 reserves: the two strongest directions
# the free part in units of the strongest eigenvalue (4): 2/4 and 1/4, singular values sqrt of those
S3, S4 = 0.5 ** 0.5, 0.5


def test_leftover_factor_is_the_free_part_in_units_of_the_strongest_eigenvalue():
    f = leftover_factor(R, U)
    assert torch.allclose(f @ f.T, torch.diag(torch.tensor([0.0, 0.0, 0.5, 0.25], dtype=torch.float64)))
    assert f.shape == (4, 2)
    assert leftover_factor(torch.zeros(4, 4), U).shape == (4, 0)
    assert torch.allclose(leftover_factor(3 * R, U), f)  # a task with more data (a larger R) weighs the same


def test_importance_is_sgps():
    assert importance(torch.tensor(1.0), 1.0) == 1.0  # the strongest direction: fully important
    assert torch.isclose(importance(torch.tensor(0.01), 1.0), torch.tensor(0.02 / 1.01))
    assert torch.isclose(importance(torch.tensor(0.01), 0.0), torch.tensor(0.01))  # linear in s at gamma 0
    assert importance(torch.tensor(0.01), 1000.0) > 0.9  # large gamma: every used direction nearly blocked


def test_attenuation_is_the_importance_of_the_free_energy_capped():
    f = leftover_factor(R, U)
    v, scale = attenuation_directions(U, f, gamma=1.0)
    order = scale.argsort(descending=True)
    expected = torch.tensor([2 * S3 / (S3 + 1), 2 * S4 / (S4 + 1)], dtype=torch.float64)  # 0.828, 0.667
    assert torch.allclose(scale[order], expected)
    assert torch.allclose(v[:, order].abs(), torch.eye(4, dtype=torch.float64)[:, 2:])  # e3 and e4
    _, strong = attenuation_directions(U, f, gamma=3.0)
    assert torch.allclose(strong.sort(descending=True).values,
                          torch.tensor([CAP, 0.8], dtype=torch.float64))  # min(0.906, CAP), 4 * 0.5 / 2.5
    assert attenuation_directions(U, f, gamma=0.0)[0].shape == (4, 0)
    # a later reservation hides what it covers: with e3 reserved only e4 is left to scale
    v3, s3 = attenuation_directions(torch.eye(4, dtype=torch.float64)[:, :3], f, gamma=1.0)
    assert v3.shape == (4, 1) and torch.allclose(s3, expected[1:])
    # two tasks' leftovers add before the importance is taken: e4 at 1/4 twice is s = sqrt(1/2)
    _, both = attenuation_directions(torch.eye(4, dtype=torch.float64)[:, :3], torch.cat([f, f], 1), gamma=1.0)
    assert torch.allclose(both, expected[:1])


def test_attenuated_rows_are_x_times_s():
    v, scale = attenuation_directions(U, leftover_factor(R, U), gamma=1.0)
    xt = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64) / 3 ** 0.5
    # S = diag(0, 0, 1 - a3, 1 - a4): the reserved e1 removed, e3 and e4 scaled down
    a3, a4 = 2 * S3 / (S3 + 1), 2 * S4 / (S4 + 1)
    expected = torch.tensor([[0.0, 0.0, 1 - a3, 1 - a4]], dtype=torch.float64) / 3 ** 0.5
    assert torch.allclose(attenuated_rows(xt, U, v, scale), expected)


def test_attenuated_factors_train_orthogonal_to_the_basis_and_keep_full_rank():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(12, 4, generator=gen))[0]
    leftover = torch.randn(12, 6, generator=gen, dtype=torch.float64) * 3  # strong: most directions capped
    v, scale = attenuation_directions(basis.double(), leftover, gamma=1.0)
    assert v.shape[1] == 6 and scale.max() == CAP
    factors = StiefelFactors(basis, d_out=5, rank=3, retraction="cayley", generator=gen, attenuation=(v, scale))
    train_factors(factors, torch.randn(64, 12, generator=gen), torch.randn(64, 5, generator=gen), steps=40)
    a = factors.factor_a()
    assert factors.lora_B.abs().max() > 0.01
    assert (a @ basis).abs().max() < 1e-6  # A U = 0 still
    assert torch.linalg.svdvals(a).min() >= (1 - CAP) - 1e-5  # no row scaled to nothing
    plain = StiefelFactors(basis, d_out=5, rank=3, retraction="cayley")
    with torch.no_grad():
        plain.x.copy_(factors.x)
    assert not torch.allclose(plain.factor_a(), a)  # the scaling acts


def test_attenuation_is_checked():
    with pytest.raises(ConfigError, match="attenuation must be non-negative, got -1"):
        RunConfig(stream="demo", settings={"attenuation": -1.0})
    with pytest.raises(ConfigError, match="attenuation must be a number"):
        RunConfig(stream="demo", settings={"attenuation": "strong"})


def test_a_run_with_attenuation_stores_leftovers_that_add_task_reads(tiny_model_dirs, synthetic_stream, tmp_path,
                                                                     new_task_files, monkeypatch):
    import clora.methods.orth as orth

    out = tmp_path / "run"
    config = RunConfig(stream=str(synthetic_stream), out=out, model=str(tiny_model_dirs["bert"]), method="orth",
                       rank=2, epochs=1, batch_size=8, settings={"attenuation": 1.0}, progress=False)
    report = run_stream(config)
    assert report["settings"]["attenuation"] == 1.0
    assert report["overlap"] <= 1e-5
    library = out / "library"
    manifest = json.loads((library / "manifest.json").read_text())
    assert manifest["settings"]["attenuation"] == 1.0
    stored = load_leftover(library, manifest)
    assert stored and all(f.shape[1] > 0 for f in stored.values())  # three tasks' leftovers side by side

    seen = []  # how many leftover columns each new adapter in add-task is scaled by
    real = orth.attenuation_directions
    monkeypatch.setattr(orth, "attenuation_directions", lambda b, f, g: seen.append(f.shape[1]) or real(b, f, g))
    train, test = new_task_files
    result = CliRunner().invoke(cli, ["add-task", str(library), "--name", "new", "--train", str(train),
                                      "--test", str(test), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(seen) == sorted(f.shape[1] for f in stored.values())  # the library's leftovers, read
    grown = load_leftover(library, json.loads((library / "manifest.json").read_text()))
    assert all(grown[n].shape[1] > stored[n].shape[1] for n in stored)  # and the new task's, stored


def test_leftovers_in_the_first_versions_units_are_refused(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "tasks" / "a").mkdir(parents=True)
    save_file({"m": torch.zeros(4, 1), "m.leftover": torch.zeros(4, 2)}, str(tmp_path / "tasks/a/subspace.safetensors"))
    manifest = {"modules": {"m": {"d_in": 4, "d_out": 4}}, "tasks": [{"subspace": "tasks/a/subspace.safetensors"}]}
    with pytest.raises(LibraryError, match="units of an earlier clora's attenuation setting"):
        load_leftover(tmp_path, manifest)


def test_attenuation_zero_records_no_leftover(tiny_model_dirs, synthetic_stream, tmp_path):
    out = tmp_path / "run"
    run_stream(RunConfig(stream=str(synthetic_stream), out=out, model=str(tiny_model_dirs["bert"]), method="orth",
                         rank=2, epochs=1, batch_size=8, settings={"attenuation": 0.0}, progress=False))
    library = out / "library"
    stored = load_leftover(library, json.loads((library / "manifest.json").read_text()))
    assert all(f.shape[1] == 0 for f in stored.values())


def test_the_cli_takes_attenuation():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "--attenuation" in result.output
    bad = CliRunner().invoke(cli, ["run", "demo", "--attenuation", "-2"])
    assert bad.exit_code != 0 and "attenuation must be non-negative" in bad.output


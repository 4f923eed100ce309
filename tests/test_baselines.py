import json
import math
import shutil

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.adapters import LoRASet, inject_lora
from clora.adapters.penalties import olora_penalty
from clora.cli.main import cli
from clora.config import RunConfig
from clora.settings import settings_class
from clora.methods import make_method
from clora.methods.olie import OLieMethod
from clora.methods.olora import OLoRAMethod
from clora.workflows.run import run_stream


def _two_module_lora(taylor_order=None):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    return LoRASet(inject_lora(model, ("0", "1"), rank=2, scaling=1.5, taylor_order=taylor_order))


def test_olora_penalty_covers_every_module_and_earlier_task():
    lora = _two_module_lora()
    method = OLoRAMethod(RunConfig(stream="x", method="olora", rank=2, settings={"lambda1": 0.5, "lambda2": 0.1}))
    method.begin_task(lora, 0)
    assert method.penalty(lora).item() == pytest.approx(0.1 * sum(
        layer.adapters[0].lora_A.pow(2).sum().item() for layer in lora.layers.values()))  # only L2: no earlier task
    method.end_task(lora, 0, run_inputs=lambda: None)
    method.begin_task(lora, 1)
    expected = 0.0
    for layer in lora.layers.values():
        a0, a1, b1 = layer.adapters[0].lora_A, layer.adapters[1].lora_A, layer.adapters[1].lora_B
        expected += 0.5 * olora_penalty([a0], a1).item() + 0.1 * (a1.pow(2).sum() + b1.pow(2).sum()).item()
    assert method.penalty(lora).item() == pytest.approx(expected, rel=1e-6)
    assert not any(p.requires_grad for p in lora.layers["0"].adapters[0].parameters())  # earlier is frozen


def test_olie_makes_layers_multiplicative_and_penalises_overlap():
    method = make_method(RunConfig(stream="x", method="olie", rank=2, settings={"olie_lambda": 1.0, "taylor_order": 3}))
    assert isinstance(method, OLieMethod) and method.taylor_order == 3  # the layers' form, set when they are made
    assert make_method(RunConfig(stream="x", method="inc")).taylor_order is None
    lora = _two_module_lora(method.taylor_order)
    method.begin_task(lora, 0)
    assert method.penalty(lora) is None  # nothing earlier to be orthogonal to
    with torch.no_grad():
        for layer in lora.layers.values():
            layer.adapters[0].lora_B.normal_()
    method.end_task(lora, 0, run_inputs=lambda: None)
    method.begin_task(lora, 1)
    with torch.no_grad():
        for layer in lora.layers.values():
            layer.adapters[1].lora_B.normal_()
    # by hand: E = m + m^2/2 + m^3/6 (order 3) with m = s B A, summed over both modules, times lambda
    expected = 0.0
    for layer in lora.layers.values():
        es = []
        for k in (0, 1):
            m = 1.5 * layer.adapters[k].lora_B.detach() @ layer.adapters[k].lora_A.detach()
            es.append(m + m ** 2 / 2 + m ** 3 / 6)
        expected += float(((es[0] @ es[1].T) ** 2).sum().sqrt())
    penalty = method.penalty(lora)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    # it pulls the new adapter: the gradient reaches its factors and lowers the penalty when followed
    new = [layer.adapters[1].lora_B for layer in lora.layers.values()]
    grads = torch.autograd.grad(penalty, new)
    assert all(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        for b, g in zip(new, grads):
            b -= 1e-3 * g
    assert method.penalty(lora).item() < penalty.item()


@pytest.mark.parametrize("method", ["olora", "olie", "mtl"])
def test_baselines_run_end_to_end(method, tiny_model_dirs, synthetic_stream, tmp_path):
    config = RunConfig(stream=str(synthetic_stream), out=tmp_path / method, model=str(tiny_model_dirs["gpt2"]),
                       method=method, rank=2, epochs=1, progress=False)
    report = run_stream(config)
    sum_block = report["modes"]["sum"]
    if method == "mtl":
        assert len(report["training"]) == 1 and report["training"][0]["task"] == "t0+t1+t2"
        assert sum_block["bwt"] is None and sum_block["fwt"] is None
        assert sum_block["accuracy_matrix"][0] == sum_block["accuracy_matrix"][2]
    else:
        assert [t["task"] for t in report["training"]] == ["t0", "t1", "t2"]
        assert all(t["steps"] > 0 and math.isfinite(t["final_loss"]) for t in report["training"])
        assert 0 < report["overlap"] < 1  # a penalty, not a constraint: some overlap is left
        matrix = sum_block["accuracy_matrix"]
        # the summary numbers are the accuracy matrix's (Lopez-Paz & Ranzato 2017), recomputed by hand
        assert sum_block["average_accuracy"] == pytest.approx(sum(matrix[2]) / 3)
        assert sum_block["bwt"] == pytest.approx(sum(matrix[2][i] - matrix[i][i] for i in range(2)) / 2)
        assert all(0.0 <= x <= 1.0 for row in matrix for x in row if x is not None)


def test_compare_writes_one_table(tiny_model_dirs, synthetic_stream, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", str(synthetic_stream), "--methods", "seq,inc,olora,olie,orth,mtl",
                                      "--model", str(tiny_model_dirs["bert"]), "--rank", "2", "--epochs", "1",
                                      "--lambda1", "0.25", "--frame-schedule", "linear", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "compare.json").read_text())
    assert list(table["methods"]) == ["seq", "inc", "olora", "olie", "orth", "mtl"]
    # each method ran with its own of the knobs given, and its report says so
    settings = {m: json.loads((out / m / "report.json").read_text())["settings"] for m in table["methods"]}
    assert settings["olora"]["lambda1"] == 0.25 and settings["orth"]["frame_schedule"] == "linear"
    assert "lambda1" not in settings["orth"] and "frame_schedule" not in settings["inc"]
    assert "lambda1" not in table["settings"] and "rank" in table["settings"]
    assert table["methods"]["orth"]["overlap"] <= 1e-5
    for method in ("inc", "olora", "olie"):  # the table carries each run's own overlap, not a constant
        report = json.loads((out / method / "report.json").read_text())
        assert table["methods"][method]["overlap"] == report["overlap"] and report["overlap"] > 1e-3
    assert table["methods"]["mtl"]["modes"]["sum"]["bwt"] is None
    assert f"| orth | {settings_class('orth').default_lr:g} | sum |" in (out / "compare.md").read_text()
    assert table["methods"]["olie"]["lr"] == settings_class("olie").default_lr  # each method's own default rate
    assert (out / "compare.png").stat().st_size > 1000
    assert all((out / m / "report.json").is_file() for m in table["methods"])


def test_compare_rejects_unknown_methods_before_running(tmp_path):
    result = CliRunner().invoke(cli, ["compare", "demo", "--methods", "orth,magic", "--out", str(tmp_path / "c")])
    assert result.exit_code != 0 and "unknown method(s) magic" in result.output
    assert not (tmp_path / "c").exists()


def test_compare_jobs_gives_the_same_table_as_one_at_a_time(tiny_model_dirs, synthetic_stream, tmp_path):
    args = ["compare", str(synthetic_stream), "--methods", "inc,orth,mtl", "--model", str(tiny_model_dirs["bert"]),
            "--rank", "2", "--epochs", "1", "--quiet"]
    tables = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        result = CliRunner().invoke(cli, args + ["--jobs", jobs, "--out", str(out)])
        assert result.exit_code == 0, result.output
        tables.append(json.loads((out / "compare.json").read_text()))
    assert list(tables[1]["methods"]) == ["inc", "orth", "mtl"]  # the asked order, whichever finished first
    for method in ("inc", "orth", "mtl"):
        assert tables[1]["methods"][method]["modes"] == tables[0]["methods"][method]["modes"]


def test_compare_jobs_refused_under_a_launcher(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(cli, ["compare", "demo", "--jobs", "2", "--out", str(tmp_path / "c")])
    assert result.exit_code != 0 and "under accelerate launch use one job" in result.output and "(--jobs)" in result.output
    assert not (tmp_path / "c").exists()


def test_compare_resume_keeps_finished_runs_with_the_same_settings(tiny_model_dirs, synthetic_stream, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", str(synthetic_stream), "--methods", "inc,orth", "--model", str(tiny_model_dirs["bert"]),
            "--rank", "2", "--epochs", "1", "--out", str(out), "--quiet"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    whole = json.loads((out / "compare.json").read_text())
    # an interruption: orth never finished and the table was never written
    shutil.rmtree(out / "orth")
    (out / "compare.json").unlink()
    inc_report = (out / "inc" / "report.json").read_bytes()
    refused = CliRunner().invoke(cli, args)
    assert_one_line_error(refused, "holds an unfinished comparison (finished: inc); resume it to keep those runs")
    only_orth = args[:args.index("--methods") + 1] + ["orth"] + args[args.index("--methods") + 2:]
    result = CliRunner().invoke(cli, only_orth + ["--resume"])  # resumed for the other method alone
    assert result.exit_code == 0, result.output
    assert (out / "inc" / "report.json").read_bytes() == inc_report and (out / "orth" / "report.json").is_file()
    shutil.rmtree(out / "orth")
    (out / "compare.json").unlink()

    result = CliRunner().invoke(cli, args + ["--resume"])
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "compare.json").read_text())
    assert resumed["kept"] == ["inc"] and (out / "inc" / "report.json").read_bytes() == inc_report
    assert "kept from an earlier, interrupted invocation (--resume): inc" in (out / "compare.md").read_text()
    for method in ("inc", "orth"):  # the resumed table is the one an uninterrupted run wrote
        assert resumed["methods"][method]["modes"] == whole["methods"][method]["modes"]

    # other settings: nothing is kept, every method runs again
    two_epochs = args[:args.index("--epochs") + 1] + ["2"] + args[args.index("--epochs") + 2:]
    result = CliRunner().invoke(cli, two_epochs + ["--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "compare.json").read_text())["kept"] == []
    assert json.loads((out / "inc" / "report.json").read_text())["settings"]["epochs"] == 2


def test_compare_resume_runs_again_over_another_data_folder(tiny_model_dirs, tmp_path):
    rows = [{"sentence": f"note number {i} about {['rain', 'sun'][i % 2]}", "label": ["wet", "dry"][i % 2]}
            for i in range(16)]
    for root in ("d1", "d2"):  # the same task name and relative path under two data folders
        folder = tmp_path / root / "weather"
        folder.mkdir(parents=True)
        for split, part in (("train", rows), ("test", rows[:6])):
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    stream = tmp_path / "one.yaml"
    stream.write_text("name: one\ntasks:\n  - name: weather\n    format: jsonl\n    path: weather\n"
                      "    instruction: Is it wet or dry?\n")
    out = tmp_path / "cmp"
    args = ["compare", str(stream), "--methods", "inc", "--model", str(tiny_model_dirs["bert"]), "--rank", "2",
            "--epochs", "1", "--out", str(out), "--quiet", "--resume"]
    assert CliRunner().invoke(cli, args + ["--data-dir", str(tmp_path / "d1")]).exit_code == 0
    same = CliRunner().invoke(cli, args + ["--data-dir", str(tmp_path / "d1")])
    assert same.exit_code == 0 and json.loads((out / "compare.json").read_text())["kept"] == ["inc"]
    other = CliRunner().invoke(cli, args + ["--data-dir", str(tmp_path / "d2")])
    assert other.exit_code == 0, other.output
    assert json.loads((out / "compare.json").read_text())["kept"] == []  # read elsewhere: trained again
    manifest = json.loads((out / "inc" / "library" / "manifest.json").read_text())
    assert manifest["tasks"][0]["data"]["path"] == str((tmp_path / "d2" / "weather").resolve())

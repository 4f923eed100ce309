import json

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli

EXPECTED_FILES = {"report.json", "report.md", "accuracy_oracle.csv", "accuracy_sum.csv",
                  "heatmap_oracle.png", "heatmap_sum.png", "library"}


def _run(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)])




def test_run_writes_every_file(tiny_model_dirs, synthetic_stream, tmp_path):
    out = tmp_path / "out"
    result = _run(synthetic_stream, "--out", out, "--model", tiny_model_dirs["bert"], "--method", "inc",
                  "--rank", "2", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    assert "sum: AA" in result.output
    manifest = json.loads((out / "library" / "manifest.json").read_text())
    assert [t["name"] for t in manifest["tasks"]] == ["t0", "t1", "t2"]
    assert all((out / "library" / t["adapter"]).is_file() for t in manifest["tasks"])
    # no staging folders left behind
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())


def test_rerun_replaces_an_earlier_run_but_not_a_foreign_folder(tiny_model_dirs, synthetic_stream, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    result = _run(synthetic_stream, "--out", foreign, "--model", tiny_model_dirs["bert"], "--quiet")
    assert_one_line_error(result, "holds no clora run")
    assert (foreign / "precious.txt").read_text() == "keep"


@pytest.fixture
def cl_dir(tmp_path):
    root = tmp_path / "data"
    (root / "t").mkdir(parents=True)
    rows = [{"sentence": "red apple", "label": "yes"}, {"sentence": "blue stone", "label": "no"}]
    (root / "t" / "train.json").write_text(json.dumps(rows))
    (root / "t" / "test.json").write_text(json.dumps(rows))
    stream = tmp_path / "s.yaml"
    stream.write_text("tasks:\n  - {name: t, format: cl_benchmark, path: t, instruction: is it}\n")
    return root, stream


def test_error_unknown_stream(tmp_path):
    assert_one_line_error(_run("no-such-stream", "--out", tmp_path / "o"), "unknown stream 'no-such-stream'")


def test_error_missing_data_dir(cl_dir, tmp_path):
    _, stream = cl_dir
    assert_one_line_error(_run(stream, "--data-dir", tmp_path / "absent", "--out", tmp_path / "o"), "not found")


def test_error_missing_data_file(cl_dir, tmp_path):
    root, stream = cl_dir
    (root / "t" / "test.json").unlink()
    assert_one_line_error(_run(stream, "--data-dir", root, "--out", tmp_path / "o"), "test.json' not found")


def test_error_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [\n  - {name: a\n")
    assert_one_line_error(_run(bad, "--out", tmp_path / "o"), "not valid YAML")


def test_error_malformed_json(cl_dir, tmp_path):
    root, stream = cl_dir
    (root / "t" / "train.json").write_text("[{")
    assert_one_line_error(_run(stream, "--data-dir", root, "--out", tmp_path / "o"), "is not valid JSON")


def test_error_task_with_no_examples(cl_dir, tmp_path):
    root, stream = cl_dir
    (root / "t" / "train.json").write_text("[]")
    assert_one_line_error(_run(stream, "--data-dir", root, "--out", tmp_path / "o"), "has no training examples")


def test_error_label_outside_label_set(cl_dir, tmp_path):
    root, stream = cl_dir
    (root / "t" / "labels.json").write_text('["yes", "maybe"]')
    assert_one_line_error(_run(stream, "--data-dir", root, "--out", tmp_path / "o"), "label 'no' is not in its label set")


def test_error_unknown_method(tmp_path):
    assert_one_line_error(_run("demo", "--method", "magic", "--out", tmp_path / "o"), "unknown method 'magic'")


def test_error_rank_too_large(tiny_model_dirs, synthetic_stream, tmp_path):
    result = _run(synthetic_stream, "--model", tiny_model_dirs["bert"], "--rank", "64", "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(result, "rank 64 is larger than module")
    assert not (tmp_path / "o").exists()


def test_error_missing_model_folder(synthetic_stream, tmp_path):
    assert_one_line_error(_run(synthetic_stream, "--model", tmp_path / "nomodel", "--out", tmp_path / "o"), "not found")


def test_error_bad_numbers(tmp_path):
    assert_one_line_error(_run("demo", "--epochs", "0", "--out", tmp_path / "o"), "epochs must be a positive integer")
    assert_one_line_error(_run("demo", "--lr", "-1", "--out", tmp_path / "o"), "lr must be positive")


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_bf16_base_model_trains_fp32_adapters_and_the_library_loads_in_fp32(kind, tiny_model_dirs, synthetic_stream,
                                                                             tmp_path):
    from clora.serving.inference import load_library

    out = tmp_path / "bf16"
    result = CliRunner().invoke(cli, ["run", str(synthetic_stream), "--model", str(tiny_model_dirs[kind]), "--rank",
                                      "2", "--epochs", "1", "--precision", "bf16", "--device", "cpu", "--out",
                                      str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["overlap"] <= 1e-5
    # the library records the stored float32 weights' fingerprint, so a float32 load accepts it
    rows = load_library(out / "library").predict(["red apple near the boat"])
    assert rows[0]["task"] in {"t0", "t1", "t2"}


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--device", "cuda"], None),  # asked for, absent here: a clear error; present: not this test's business
    (["--precision", "fp16", "--device", "cpu"], "precision fp16 needs a GPU"),
])
def test_device_and_precision_errors_are_one_line(args, message, tiny_model_dirs, synthetic_stream, tmp_path):
    import torch

    if message is None:
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        message = "no CUDA GPU is available"
    result = CliRunner().invoke(cli, ["run", str(synthetic_stream), "--model", str(tiny_model_dirs["bert"]),
                                      "--out", str(tmp_path / "x"), *args])
    assert_one_line_error(result, message)
    assert not (tmp_path / "x").exists()


def test_cli_defaults_are_the_library_defaults(monkeypatch, tmp_path):
    """`clora run STREAM` with no options trains with exactly ``RunConfig``'s defaults."""
    import dataclasses

    import clora.workflows.run
    from clora.config import RunConfig

    seen = {}

    def capture(config):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(clora.workflows.run, "run_stream", capture)
    _run("demo", "--out", tmp_path / "o")
    assert "config" in seen, "the run command did not reach run_stream"
    expected = RunConfig(stream="demo", out=tmp_path / "o")
    for field in dataclasses.fields(RunConfig):
        assert getattr(seen["config"], field.name) == getattr(expected, field.name), field.name


@pytest.mark.parametrize("args,line", [
    (["demo", "--epochs", "0"], "Error: epochs must be a positive integer, got 0 (--epochs)"),
    (["demo", "--seed", "-1"], "Error: seed must be an integer from 0 to 4294967295, got -1 (--seed)"),
    (["demo", "--frame-lr", "-2"], "Error: frame_lr must be positive, got -2.0 (--frame-lr)"),
    (["cl-benchmark-4"], "which is read from a data folder: give one (--data-dir)"),
])
def test_the_cli_adds_the_flag_to_clora_messages_that_name_a_setting(args, line, tmp_path):
    result = _run(*args, "--out", tmp_path / "o")
    assert_one_line_error(result, line)
    assert not (tmp_path / "o").exists()


def test_library_messages_name_no_flag_for_python_callers(tmp_path):
    from clora.config import RunConfig
    from clora.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        RunConfig(stream="demo", settings={"frame_lr": -2.0})
    assert info.value.field == "frame_lr" and "--" not in str(info.value)

"""The examples run as documented (on a tiny model, to stay fast)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    return _load_path(EXAMPLES / f"{name}.py")


def test_own_data_example(tiny_model_dirs, tmp_path):
    report = _load("own_data").main(["--workdir", str(tmp_path), "--model", str(tiny_model_dirs["bert"])])
    assert report["tasks"] == ["weather", "mood"]
    assert (tmp_path / "run" / "report.json").is_file()
    assert (tmp_path / "data" / "mood" / "train.jsonl").is_file()


def test_summarize_runs_reads_reports(tmp_path):
    import json

    folder = tmp_path / "r1"
    folder.mkdir()
    block = {"accuracy_matrix": [[1.0]], "average_accuracy": 0.5, "bwt": -0.25, "forgetting": 0.25, "fwt": None}
    (folder / "report.json").write_text(json.dumps({"method": "orth", "overlap": 1e-8, "modes": {"sum": block},
                                                    "timing": {"train_s": 3.0, "eval_s": 1.0}}))
    text = _load_path(EXAMPLES / "benchmarks" / "summarize_runs.py").main([str(folder)])
    assert "| r1 | orth | sum | 50.0 | -25.0 | 25.0 | n/a | 1.0e-08 | 3 | 1 |" in text


def _load_path(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCHMARKS = EXAMPLES / "benchmarks"


def test_speed_benchmarks_run_and_agree_with_peft(tiny_model_dirs, tmp_path, capsys):
    """The benchmark scripts run end to end on tiny models (their speed numbers are for docs/benchmarks.md)."""
    bert = str(tiny_model_dirs["bert"])
    steps = _load_path(BENCHMARKS / "train_step.py").main(
        ["--model", bert, "--tasks", "2", "--rank", "2", "--repeats", "1", "--warmup", "0",
         "--json", str(tmp_path / "steps.json")])
    assert [row["frozen_adapters"] for row in steps["positions"]] == [0, 1]
    assert set(steps["max_ratio_to_peft"]) == {"orth", "orth-unfolded", "orth-dense-cayley", "inc"}
    mixed = _load_path(BENCHMARKS / "mixed_inference.py").main(
        ["--model", bert, "--rank", "2", "--tasks", "3", "--batch", "6", "--repeats", "1", "--warmup", "0"])
    # clora's one-pass mixed batch and PEFT's adapter_names= answer every input alike
    assert mixed["clora_peft_prediction_agreement"] == 1.0 and mixed["batch"] == 6
    scale = _load_path(BENCHMARKS / "library_scale.py").main(
        ["--tasks", "3", "--checkpoints", "1,3", "--repeats", "1", "--workdir", str(tmp_path / "scale"),
         "--json", str(tmp_path / "scale.json")])
    assert [p["tasks"] for p in scale["checkpoints"]] == [1, 3]
    assert [a["tasks_after"] for a in scale["add_task"]] == [2, 3]
    assert 0 < scale["checkpoints"][-1]["capacity_used"] < 1
    plots = _load_path(BENCHMARKS / "plot_benchmarks.py").main(
        ["--train-step", str(tmp_path / "steps.json"), "--library-scale", str(tmp_path / "scale.json"),
         "--out", str(tmp_path / "img")])
    assert all(p.stat().st_size > 1000 for p in plots)


def test_router_read_study_covers_every_layer_and_token_cap(tiny_model_dirs, synthetic_stream):
    result = _load_path(BENCHMARKS / "router_read_study.py").main(
        [str(synthetic_stream), "--model", str(tiny_model_dirs["bert"]), "--max-train", "24", "--max-test", "8",
         "--tokens", "8,16"])
    assert set(result) == {f"tokens={t},layer={k}" for t in (8, 16) for k in (1, 2)}
    for shares in result.values():
        assert abs(shares["own"] + shares["other"] + shares["fallback"] - 1) < 1e-9
        assert 0 <= shares["argmax"] <= 1


def test_routing_benchmark_measures_both_routers(tiny_model_dirs, tmp_path, capsys):
    import json

    out = tmp_path / "routing.json"
    _load_path(BENCHMARKS / "routing.py").main(["small", "--sizes", "12", "--max-test", "6", "--out",
                                                str(tmp_path / "bench"), "--model", str(tiny_model_dirs["bert"]),
                                                "--method", "inc", "--json", str(out)])
    results = json.loads(out.read_text())["results"]["12"]
    for router in ("lda", "arrow"):
        r = results[router]
        assert r["inputs"] == 18 and abs(r["own"] + r["fallback"] + r["misrouted"] - 1) < 1e-9
        assert 0 <= r["routed_accuracy"] <= 1 and 0 <= r["unseen_fallback"] <= 1
    assert results["arrow"]["fallback"] == 0.0  # Arrow always routes
    printed = capsys.readouterr().out
    table = _load_path(BENCHMARKS / "routing.py").table(json.loads(out.read_text()))
    assert table in printed and "| small, 12 | arrow |" in table  # the docs' table, rendered from the JSON


def test_small_task_schedule_compares_three_schedules(tiny_model_dirs, tmp_path):
    import json

    out = tmp_path / "schedule.json"
    result = _load_path(BENCHMARKS / "small_task_schedule.py").main(
        [str(EXAMPLES / "data" / "my-stream.yaml"), "--model", str(tiny_model_dirs["bert"]), "--seeds", "0",
         "--max-test", "4", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    runs = result["runs"]
    # support has 48 training examples (3 steps an epoch): 3 epochs, 15 by the floor, 10 given
    assert [runs[name][0]["epochs"][0] for name in ("3 epochs", "default", "10 epochs")] == [3, 15, 10]
    assert runs["default"][0]["steps"][0] == 45
    assert set(result["mean"]["default"]) == {"routed", "oracle", "sum"}


def test_answer_probability_benchmark_splits_right_from_wrong(library_factory, tmp_path):
    result = _load_path(BENCHMARKS / "answer_probability.py").main([str(library_factory("bert", "orth"))])
    total = result["all"]
    assert total["answers"] == 32 and total["right"] + total["wrong"] == 32  # two tasks of 16 test inputs
    for key in ("answer_probability_mean_right", "router_confidence_mean_right"):
        assert total[key] is None or 0.0 <= total[key] <= 1.0


def test_openai_load_benchmark_compares_both_endpoints(library_factory, tmp_path):
    import json

    out = tmp_path / "openai.json"
    result = _load_path(BENCHMARKS / "openai_load.py").main(
        [str(library_factory("bert", "orth")), "--clients", "2", "--seconds", "0.5", "--rounds", "1",
         "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "openai_load"
    assert result["predict"]["requests"] > 0 and result["openai"]["requests"] > 0
    assert result["predict"]["errors"] == result["openai"]["errors"] == 0
    assert result["answers"]["compared"] > 0 and result["answers"]["different"] == 0


def test_quantized_base_benchmarks_measure_memory_time_and_quality(tiny_model_dirs, synthetic_stream, tmp_path):
    import json

    result = _load_path(BENCHMARKS / "quantized_base.py").main(
        ["--model", str(tiny_model_dirs["bert"]), "--stream", str(synthetic_stream), "--repeats", "1", "--warmup", "0",
         "--eval-batch", "8", "--json", str(tmp_path / "q.json")])
    weights = {q: result["memory"][q]["linear_weight_bytes"] for q in ("none", "int8", "nf4")}
    assert max(weights["nf4"], weights["int8"]) < weights["none"]  # a tiny model: the code book outweighs 4 bits
    assert all(result["memory"][q]["peak_rss_bytes"] >= result["memory"][q]["rss_before_load_bytes"] > 0
               for q in weights)
    assert result["time"]["train_step_ratio"]["none"] == 1.0 and result["time"]["inference_ms"]["nf4"] > 0
    assert "| nf4 |" in _load_path(BENCHMARKS / "quantized_base.py").table(json.loads((tmp_path / "q.json").read_text()))
    block = {"accuracy_matrix": [[0.5]], "average_accuracy": 0.5, "bwt": 0.0, "forgetting": 0.0, "fwt": None}
    for name, aa in (("orth-none", 0.5), ("orth-nf4", 0.48)):
        (tmp_path / name).mkdir()
        modes = {m: {**block, "average_accuracy": aa} for m in ("sum", "oracle", "routed")}
        (tmp_path / name / "report.json").write_text(json.dumps(
            {"method": "orth", "overlap": 1e-8, "modes": modes, "settings": {}, "timing": {"train_s": 1.0}}))
    cl4 = _load_path(BENCHMARKS / "quantized_cl4.py")
    text = cl4.table(cl4.main([str(tmp_path / "orth-nf4"), str(tmp_path / "orth-none")]))
    assert text.splitlines()[2].startswith("| orth | none | 50.0 |  | +0.0 |")  # full precision first
    assert "| orth | nf4 | 48.0 | -2.0 | +0.0 | +0.0 | 48.0 | 48.0 | -2.0 | 1.0e-08 |" in text


def test_the_quantization_choice_study_reports_every_backend(tmp_path):
    study = _load_path(BENCHMARKS / "quantization_choice.py")
    result = study.main(["--json", str(tmp_path / "choice.json")])
    rows = result["backends"]
    assert set(rows) == {"bitsandbytes int8", "bitsandbytes nf4", "torchao int8 weight-only", "optimum-quanto int8",
                         "optimum-quanto int4"}
    assert 0 < rows["bitsandbytes int8"]["relative_error"] < rows["bitsandbytes nf4"]["relative_error"] < 0.5
    table = study.table(result)
    assert all(f"| {name} |" in table for name in rows)  # a backend not installed is a row that says so


def test_the_int8_gradient_study_puts_weight_only_int8_closer_to_full_precision_than_llm_int8(tmp_path):
    pytest.importorskip("bitsandbytes")
    from conftest import shared_data_or_skip

    study = _load_path(BENCHMARKS / "int8_gradients.py")
    result = study.main(["--data-dir", str(shared_data_or_skip()), "--examples", "8", "--json", str(tmp_path / "g.json")])
    errors = result["gradient_error"]
    assert set(errors) == {"int8, LLM.int8 matmul (bitsandbytes)", "int8, weight-only (clora)",
                           "nf4 (bitsandbytes, weight-only)"}
    assert 0 < errors["int8, weight-only (clora)"] < errors["int8, LLM.int8 matmul (bitsandbytes)"]
    assert errors["int8, weight-only (clora)"] < errors["nf4 (bitsandbytes, weight-only)"]
    assert "| int8, weight-only (clora) |" in study.table(result)


def test_the_run_time_benchmark_times_whole_runs_and_the_private_adapters_part(tiny_model_dirs, synthetic_stream,
                                                                               tmp_path):
    bench = _load_path(BENCHMARKS / "run_time.py")
    assert bench.parse_run("orth:private_rank=2,private_lr=0.01,subspace=both") == (
        "orth", {"private_rank": 2, "private_lr": 0.01, "subspace": "both"})
    result = bench.main([str(synthetic_stream), "--model", str(tiny_model_dirs["bert"]), "--run", "inc",
                         "--run", "orth:private_rank=2", "--json", str(tmp_path / "t.json")])
    inc, orth = result["runs"]
    assert inc["private_s"] is None and 0 < orth["private_s"] < orth["train_s"]
    assert "| orth:private_rank=2 |" in bench.table(result) and "| 1.00x |" in bench.table(result)


def test_the_unseen_ceiling_rejects_a_distant_domain_and_a_tenth_of_an_identical_one():
    import numpy as np

    study = _load_path(BENCHMARKS / "unseen_ceiling.py")
    rng = np.random.default_rng(0)
    known_train, known_test = rng.normal(size=(400, 8)), rng.normal(size=(4000, 8))
    far = rng.normal(size=(400, 8)) + 6.0
    assert study.rejected(known_train, known_test, far, rng.normal(size=(4000, 8)) + 6.0) == 1.0
    same = study.rejected(known_train, known_test, rng.normal(size=(400, 8)), rng.normal(size=(4000, 8)))
    assert abs(same - (1 - study.ACCEPT)) < 0.03  # a domain like the known ones: only what the threshold lets go
    block = {"mean": 0.966, "worst": 0.94}
    assert "| router's (layer 3, 64 tokens) | 96.6% | 94.0% |" in study.table({"router_layer": block,
                                                                             "last_layer": block})

"""The examples run as documented (on a tiny model, to stay fast)."""

import importlib.util
from pathlib import Path

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

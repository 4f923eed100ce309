"""The examples run as documented (on a tiny model, to stay fast)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_data_example(tiny_model_dirs, tmp_path):
    report = _load("own_data").main(["--workdir", str(tmp_path), "--model", str(tiny_model_dirs["bert"])])
    assert report["tasks"] == ["weather", "mood"]
    assert (tmp_path / "run" / "report.json").is_file()
    assert (tmp_path / "data" / "mood" / "train.jsonl").is_file()

"""End-to-end runs on the real default model (all-MiniLM-L6-v2, offline), at tiny sizes."""

import json

import pytest
from click.testing import CliRunner
from conftest import shared_data_or_skip

from clora.cli.main import cli


def test_demo_runs_on_the_default_model(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["run", "demo", "--out", str(out), "--max-train", "32", "--max-test", "16",
                                      "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "all-MiniLM-L6-v2" and report["tasks"] == ["cooking", "sailing", "finance", "astronomy"]
    assert report["overlap"] <= 1e-5
    assert (out / "heatmap_sum.png").stat().st_size > 1000


@pytest.mark.parametrize("method", ["seq", "inc", "orth"])
def test_shared_cl_benchmark_stream(method, tmp_path):
    data = shared_data_or_skip()
    out = tmp_path / method
    result = CliRunner().invoke(cli, ["run", "cl-benchmark-4", "--data-dir", str(data), "--method", method,
                                      "--max-train", "16", "--max-test", "8", "--epochs", "1", "--max-length", "48",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["tasks"] == ["dbpedia", "amazon", "yelp", "agnews"]
    assert len(report["modes"]["sum"]["accuracy_matrix"]) == 4


def test_the_long_10_stream_loads_every_shared_task():
    from clora.data.loaders import load_tasks
    from clora.data.stream import load_stream

    data = shared_data_or_skip()
    tasks = load_tasks(load_stream("long-10"), data, max_train=4, max_test=4)
    assert [t.name for t in tasks] == ["yelp", "amazon", "mnli", "cb", "copa", "dbpedia", "agnews", "multirc",
                                       "boolqa", "wic"]
    assert all(len(t.train) == 4 and len(t.test) == 4 for t in tasks)

"""Data-parallel training under ``accelerate launch``: 2 CPU processes (gloo) against one."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from clora.cli.main import cli
from clora.training.distributed import Workers

pytest.importorskip("accelerate")
# Two processes; the sum of gradients over shares differs from the one-process sum only
# by float rounding, which Adam's normalisation can grow over the steps of a short run.
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch`` of 2 processes running ``clora ARGS`` (torchrun underneath, gloo on CPU)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "clora.cli.main"] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _adapters(library) -> dict[str, torch.Tensor]:
    return {f"{task.name}/{k}": v for task in sorted((library / "tasks").iterdir())
            for k, v in load_file(task / "adapter.safetensors").items()}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_share_splits_a_batch_into_contiguous_near_equal_parts():
    workers = Workers()
    batch = list(range(7))
    parts = []
    for rank in range(3):
        workers.size, workers.rank = 3, rank
        parts.append(workers.share(batch))
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    workers.size, workers.rank = 4, 3
    assert workers.share([0, 1]) == []  # more processes than examples: this one sits the step out


def test_two_gloo_processes_train_the_same_adapters_as_one(tiny_model_dirs, synthetic_stream, tmp_path,
                                                          new_task_files):
    # batch 7 over 48 examples: a last batch of 6, and shares of 4 and 3 in the full ones
    args = [str(synthetic_stream), "--model", str(tiny_model_dirs["bert"]), "--rank", "2", "--epochs", "1",
            "--batch-size", "7", "--device", "cpu", "--quiet"]
    one = CliRunner().invoke(cli, ["run", *args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    two = _launch(["run", *args, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote ") == 1  # only the main process writes and reports
    diff = _max_diff(_adapters(tmp_path / "one" / "library"), _adapters(tmp_path / "two" / "library"))
    assert diff <= TOLERANCE, f"adapters differ by {diff:.2e}"
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["overlap"] <= 1e-5  # orthogonality holds in the data-parallel run

    # add-task under the launcher: same new adapter as one process, one commit
    train, test = new_task_files
    shutil.copytree(tmp_path / "one" / "library", tmp_path / "lib1")
    shutil.copytree(tmp_path / "one" / "library", tmp_path / "lib2")
    extra = ["--name", "fin", "--train", str(train), "--test", str(test), "--batch-size", "7", "--device", "cpu",
             "--quiet"]
    one = CliRunner().invoke(cli, ["add-task", str(tmp_path / "lib1"), *extra])
    assert one.exit_code == 0, one.output
    two = _launch(["add-task", str(tmp_path / "lib2"), *extra])
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "lib2" / "manifest.json").read_text())["version"] == 2
    diff = _max_diff(_adapters(tmp_path / "lib1"), _adapters(tmp_path / "lib2"))
    assert diff <= TOLERANCE, f"add-task adapters differ by {diff:.2e}"
    verify = CliRunner().invoke(cli, ["library", "verify", str(tmp_path / "lib2")])
    assert verify.exit_code == 0, verify.output

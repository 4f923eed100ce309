import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from clora.testing import FAMILY_OF_KIND, save_tiny  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "CL_Benchmark"


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """``{kind: folder}`` for the tiny bert, gpt2, llama and t5 models (built once)."""
    root = tmp_path_factory.mktemp("models")
    return {kind: save_tiny(kind, root / kind) for kind in FAMILY_OF_KIND}


@pytest.fixture
def synthetic_stream(tmp_path):
    """A 3-task synthetic stream file with small tasks, for fast end-to-end runs."""
    path = tmp_path / "three.yaml"
    path.write_text(
        "name: three\n"
        "tasks:\n"
        + "".join(f"  - name: t{i}\n    format: synthetic\n    instruction: Which colour does this note signal?\n"
                  f"    options: {{domain: {d}, shift: {i}, n_train: 48, n_test: 24}}\n"
                  for i, d in enumerate(["cooking", "sailing", "finance"])))
    return path


def shared_data_or_skip() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared CL_Benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_jsonl(path: Path, examples) -> Path:
    """Examples (``.text``, ``.target``) as ``{"sentence", "label"}`` JSON lines."""
    import json

    path.write_text("".join(json.dumps({"sentence": e.text, "label": e.target}) + "\n" for e in examples))
    return path


@pytest.fixture
def new_task_files(tmp_path):
    """``(train.jsonl, test.jsonl)`` of a synthetic task in a domain the tiny libraries have not seen."""
    from clora.data.synthetic import synthetic_examples

    train, test, _ = synthetic_examples("new", {"domain": "finance", "shift": 2, "n_train": 32, "n_test": 16})
    return write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test)


@pytest.fixture(scope="session")
def library_factory(tiny_model_dirs, tmp_path_factory):
    """``build(kind, method, model)``: a 2-task library trained once per session (read-only; copy it)."""
    from clora.config import RunConfig
    from clora.workflows.run import run_stream

    built = {}

    def build(kind: str = "bert", method: str = "orth", model: str | None = None) -> Path:
        key = (kind, method, model)
        if key not in built:
            root = tmp_path_factory.mktemp(f"lib-{kind}-{method}")
            stream = root / "s.yaml"
            stream.write_text("tasks:\n" + "".join(
                f"  - {{name: t{i}, format: synthetic, instruction: Which colour, "
                f"options: {{domain: {d}, shift: {i}, n_train: 32, n_test: 16}}}}\n"
                for i, d in enumerate(["cooking", "sailing"])))
            run_stream(RunConfig(stream=str(stream), out=root / "run", model=model or str(tiny_model_dirs[kind]),
                                 method=method, rank=2, epochs=1, progress=False))
            built[key] = root / "run" / "library"
        return built[key]

    return build


@pytest.fixture(scope="session")
def minilm_demo(tmp_path_factory):
    """The demo stream on the real MiniLM, 96 training and 40 test examples per task, the default schedule
    (at least 45 optimiser steps a task): one library for every test that needs real routing and well learnt
    tasks (read-only; copy it)."""
    from click.testing import CliRunner

    from clora.cli.main import cli

    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(cli, ["run", "demo", "--out", str(out), "--max-train", "96", "--max-test", "40",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    return out / "library"


@pytest.fixture
def library_copy(library_factory, tmp_path):
    """``copy(kind, method)``: a private, writable copy of a session library."""
    import shutil

    def copy(kind: str = "bert", method: str = "orth", model: str | None = None) -> Path:
        dst = tmp_path / f"lib-{kind}-{method}"
        shutil.copytree(library_factory(kind, method, model), dst)
        return dst

    return copy


def library_state(folder: Path) -> dict:
    """Every file under a library (relative path -> sha256): equal states are byte-identical."""
    from clora.library import sha256_file

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, fragment: str) -> None:
    """A CLI result that failed with exactly one 'Error: ...' line containing ``fragment``, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0], lines[0]


def post_json(port: int, route: str, body, timeout: float = 120, headers: dict | None = None) -> tuple[int, dict]:
    """POST ``body`` (bytes, or an object sent as JSON) to a loopback server; (status, JSON answer)."""
    import json
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{route}", data=data,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def train_factors(factors, x, y, steps: int, lr: float = 0.05) -> None:
    """Fit ``x @ A^T @ B^T`` to ``y`` by Riemannian Adam (a Stiefel frame and B train together)."""
    import geoopt

    opt = geoopt.optim.RiemannianAdam(factors.parameters(), lr=lr)
    for _ in range(steps):
        loss = ((x @ factors.factor_a().T @ factors.factor_b().T - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


PROBE_TEXTS = ["red kitchen note", "the harbour market signal is blue", "sky"]


def model_outputs(model, tokenizer, kind: str, texts=PROBE_TEXTS):
    """A padded batch's outputs to compare two models by: logits for a causal LM, else the last hidden state."""
    import torch

    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch)
    return out.logits if kind == "llama" else out.last_hidden_state

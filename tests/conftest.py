import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import FAMILY_OF_KIND, save_tiny  # noqa: E402

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

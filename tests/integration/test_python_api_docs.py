"""Every example of docs/python-api.md runs as written, in order, in one namespace."""

import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_the_promised_examples():
    code = "\n".join(examples())
    assert "datasets.Dataset" in code and "model=my_model" in code and "add_task(" in code


def test_every_python_api_example_runs(tmp_path, capsys):
    namespace = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write relative paths
    try:
        for n, code in enumerate(examples(), 1):
            exec(compile(code, f"{DOC.name} example {n}", "exec"), namespace)
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "model must be a name, a folder or a transformers PreTrainedModel, got list" in printed
    assert not (tmp_path / "runs" / "bad").exists()  # refused before anything was written
    assert "rank must be a positive integer, got 0 rank" in printed
    assert (tmp_path / "finance-peft" / "adapter_config.json").is_file()

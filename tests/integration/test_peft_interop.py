"""PEFT as a real client: exported snapshots load in PEFT, PEFT-made adapters import into clora.

Outputs are compared as the max absolute difference of the model's outputs (encoder:
last hidden state; causal LM: logits) on a padded batch, to 1e-5.
"""

import pytest
import torch
from click.testing import CliRunner
from conftest import model_outputs

from clora.adapters import use_adapters
from peft import LoraConfig, PeftModel, get_peft_model

from clora.cli.main import cli
from clora.library.layout import read_manifest
from clora.workflows.library_model import open_library_model
from clora.families.loading import load_base_model

KINDS = {"bert": ("query", "value"), "llama": ("q_proj", "v_proj"), "minilm": ("query", "value")}


def _model_arg(kind, tiny_model_dirs):
    return "all-MiniLM-L6-v2" if kind == "minilm" else str(tiny_model_dirs[kind])


def _fresh_base(kind, tiny_model_dirs):
    return load_base_model(_model_arg(kind, tiny_model_dirs))


@pytest.mark.parametrize("kind", list(KINDS))
def test_exported_snapshot_loads_in_peft_with_the_same_outputs(kind, library_copy, tiny_model_dirs, tmp_path):
    lib = library_copy(kind="bert" if kind == "minilm" else kind, model="all-MiniLM-L6-v2" if kind == "minilm" else None)
    out = tmp_path / "peft"
    result = CliRunner().invoke(cli, ["library", "export", str(lib), "--task", "t1", "--format", "peft", str(out)])
    assert result.exit_code == 0, result.output
    lm = open_library_model(lib, progress=False)
    with use_adapters(lm.snapshot("t1")):
        ours = model_outputs(lm.base_model.model, lm.base_model.tokenizer, kind)
    base = _fresh_base(kind, tiny_model_dirs)
    peft_model = PeftModel.from_pretrained(base.model, str(out)).eval()
    theirs = model_outputs(peft_model, base.tokenizer, kind)
    with peft_model.disable_adapter():
        bare = model_outputs(peft_model, base.tokenizer, kind)
    assert (ours - bare).abs().max() > 1e-4  # the adapter does something
    assert (ours - theirs).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_peft_made_adapter_imports_with_the_same_outputs(kind, library_copy, tiny_model_dirs, tmp_path):
    lib = library_copy(kind="bert" if kind == "minilm" else kind, model="all-MiniLM-L6-v2" if kind == "minilm" else None)
    base = _fresh_base(kind, tiny_model_dirs)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=12, target_modules=list(KINDS[kind]), init_lora_weights=False)
    peft_model = get_peft_model(base.model, config).eval()
    peft_model.save_pretrained(str(tmp_path / "made-by-peft"))
    theirs = model_outputs(peft_model, base.tokenizer, kind)
    result = CliRunner().invoke(cli, ["library", "import", str(lib), str(tmp_path / "made-by-peft"),
                                      "--name", "imported", "--labels", "red,green"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(lib)
    assert manifest["tasks"][-1]["snapshot"] == ["imported"]
    lm = open_library_model(lib, progress=False)
    with use_adapters(lm.snapshot("imported")):
        ours = model_outputs(lm.base_model.model, lm.base_model.tokenizer, kind)
    assert (ours - theirs).abs().max() <= 1e-5
    assert CliRunner().invoke(cli, ["library", "verify", str(lib)]).exit_code == 0


def test_import_refuses_an_adapter_for_other_modules(library_copy, tiny_model_dirs, tmp_path):
    lib = library_copy()
    base = _fresh_base("bert", tiny_model_dirs)
    get_peft_model(base.model, LoraConfig(r=2, target_modules=["key"])).save_pretrained(str(tmp_path / "k"))
    result = CliRunner().invoke(cli, ["library", "import", str(lib), str(tmp_path / "k"), "--name", "k",
                                      "--labels", "a,b"])
    assert result.exit_code != 0 and "adapts other modules" in result.output


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_export_all_writes_a_folder_per_task_that_peft_loads_with_the_same_outputs(kind, library_copy,
                                                                                  tiny_model_dirs, tmp_path):
    lib = library_copy(kind=kind)
    out = tmp_path / "vllm-loras"
    result = CliRunner().invoke(cli, ["library", "export", str(lib), "--all", "--base-model", "my-base", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "t0", "t1"]
    readme = (out / "README.md").read_text()
    assert "vllm serve my-base --enable-lora" in readme and f"t1={out.resolve() / 't1'}" in readme
    assert "VLLM_LORA_RESOLVER_CACHE_DIR" in readme
    lm = open_library_model(lib, progress=False)
    base = _fresh_base(kind, tiny_model_dirs)
    for task in ("t0", "t1"):
        import json

        assert json.loads((out / task / "adapter_config.json").read_text())["base_model_name_or_path"] == "my-base"
        with use_adapters(lm.snapshot(task)):
            ours = model_outputs(lm.base_model.model, lm.base_model.tokenizer, kind)
        peft_model = PeftModel.from_pretrained(base.model, str(out / task)).eval()
        theirs = model_outputs(peft_model, base.tokenizer, kind)
        assert (ours - theirs).abs().max() <= 1e-5, task
        base.model = peft_model.unload()  # the next task's folder loads on the bare base again
    again = CliRunner().invoke(cli, ["library", "export", str(lib), "--all", str(out)])
    assert again.exit_code != 0 and "exists and is not empty" in again.output
    neither = CliRunner().invoke(cli, ["library", "export", str(lib), str(tmp_path / "x")])
    assert neither.exit_code != 0 and "give --task NAME or --all" in neither.output
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".vllm-loras.*"))

"""Continual adapters on a quantized base (bitsandbytes int8 / nf4 on the CPU), end to end: run, the
library's record of the quantization, loading it by default and refusing another unless asked, add-task,
PEFT export onto the same quantized base, and generation with mixed-task batches."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import PROBE_TEXTS as TEXTS, assert_one_line_error, library_state, model_outputs

from clora.adapters import use_adapters
from clora.cli.main import cli
from clora.errors import ConfigError
from clora.library.layout import LibraryError
from clora.families.loading import load_base_model
from clora.serving.inference import load_library
from clora.workflows.library_model import open_library_model

pytest.importorskip("bitsandbytes")


def _stream(tmp_path, generation=False):
    path = tmp_path / "s.yaml"
    extra = "kind: generation, metric: exact_match, max_new_tokens: 4, " if generation else ""
    answer = ", answer: phrase" if generation else ""
    path.write_text("tasks:\n" + "".join(
        f"  - {{name: t{i}, format: synthetic, {extra}instruction: Which colour, "
        f"options: {{domain: {d}, shift: {i}, n_train: 32, n_test: 16{answer}}}}}\n"
        for i, d in enumerate(["cooking", "sailing"])))
    return str(path)


@pytest.fixture(scope="module")
def quantized_runs(tiny_model_dirs, tmp_path_factory):
    """``{(kind, quantization): run folder}``: two-task orth runs made with ``clora run --quantize``."""
    runs = {}
    for kind, q in (("bert", "int8"), ("llama", "nf4")):
        root = tmp_path_factory.mktemp(f"q-{kind}-{q}")
        result = CliRunner().invoke(cli, ["run", _stream(root), "--model", str(tiny_model_dirs[kind]), "--rank", "2",
                                          "--epochs", "2", "--quantize", q, "--out", str(root / "run"), "--quiet"])
        assert result.exit_code == 0, result.output
        runs[kind, q] = root / "run"
    return runs


def _copy(run, tmp_path):
    import shutil

    return shutil.copytree(run / "library", tmp_path / "lib")


@pytest.mark.parametrize("kind, q", [("bert", "int8"), ("llama", "nf4")])
def test_a_run_on_a_quantized_base_records_it_and_stays_exactly_orthogonal(quantized_runs, kind, q):
    run = quantized_runs[kind, q]
    report = json.loads((run / "report.json").read_text())
    assert report["overlap"] <= 1e-5 and report["settings"]["quantize"] == q
    manifest = json.loads((run / "library" / "manifest.json").read_text())
    assert manifest["base_quantization"]["method"] == q
    loaded = load_library(run / "library")  # the library's quantization by default
    assert loaded.current.lm.base_model.quantization == q
    assert loaded.current.lm.base_model.fingerprint == manifest["base_fingerprint"]
    assert len(loaded.predict(TEXTS)) == 3
    shown = CliRunner().invoke(cli, ["library", "show", str(run / "library")])
    assert shown.exit_code == 0 and f"quantized {q}" in shown.output, shown.output


def test_another_quantization_is_refused_unless_asked(quantized_runs, tiny_model_dirs, tmp_path):
    lib = quantized_runs["bert", "int8"] / "library"
    full = load_base_model(str(tiny_model_dirs["bert"]))
    with pytest.raises(LibraryError, match="built on a int8 base; the model given is none"):
        load_library(lib, model=full.model, tokenizer=full.tokenizer)
    before = library_state(lib)
    default = CliRunner().invoke(cli, ["predict", str(lib), "red kitchen note"])
    assert default.exit_code == 0 and "loading the base model int8-quantized, as the library was built" in default.output
    result = CliRunner().invoke(cli, ["predict", str(lib), "red kitchen note", "--quantize", "none"])
    assert result.exit_code == 0, result.output
    assert "warning: the library was built on a int8 base and is loaded on a none one, as asked" in result.output
    assert library_state(lib) == before
    other = tmp_path / "other"
    full.model.embeddings.LayerNorm.bias.data.add_(0.01)  # another model outside the linear layers
    full.model.save_pretrained(other)
    full.tokenizer.save_pretrained(other)
    with pytest.raises(LibraryError, match="has other weights \\(outside its linear layers\\)"):
        open_library_model(lib, model=str(other), quantize="nf4", progress=False)


def test_a_library_from_before_quantized_bases_loads_only_in_full_precision(library_copy):
    lib = library_copy()
    manifest = json.loads((lib / "manifest.json").read_text())
    assert manifest["base_quantization"]["method"] == "none"
    del manifest["base_quantization"]
    (lib / "manifest.json").write_text(json.dumps(manifest))  # as a clora before quantized bases wrote it
    assert load_library(lib).current.lm.base_model.quantization == "none"
    with pytest.raises(LibraryError, match="predates quantized bases"):
        load_library(lib, quantize="int8")


def test_add_task_trains_on_the_library_quantized_base_and_refuses_another(quantized_runs, new_task_files,
                                                                           tmp_path):
    lib = _copy(quantized_runs["bert", "int8"], tmp_path)
    train, test = new_task_files
    before = library_state(lib)
    refused = CliRunner().invoke(cli, ["add-task", str(lib), "--name", "new", "--train", str(train), "--test",
                                       str(test), "--quantize", "nf4", "--quiet"])
    assert_one_line_error(refused, "the library's tasks were trained on a base quantized int8")
    assert library_state(lib) == before
    result = CliRunner().invoke(cli, ["add-task", str(lib), "--name", "new", "--train", str(train), "--test",
                                      str(test), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((lib / "manifest.json").read_text())
    assert manifest["tasks"][-1]["name"] == "new" and manifest["base_quantization"]["method"] == "int8"
    lm = open_library_model(lib, progress=False)
    assert lm.base_model.quantization == "int8" and len(lm.lora) == 3


@pytest.mark.parametrize("kind, q", [("bert", "int8"), ("llama", "nf4")])
def test_an_exported_task_loads_in_peft_on_the_same_quantized_base(quantized_runs, tiny_model_dirs, kind, q,
                                                                   tmp_path):
    from peft import PeftModel

    lib = quantized_runs[kind, q] / "library"
    out = tmp_path / "peft"
    result = CliRunner().invoke(cli, ["library", "export", str(lib), "--task", "t1", "--format", "peft", str(out)])
    assert result.exit_code == 0, result.output
    lm = open_library_model(lib, progress=False)
    with use_adapters(lm.snapshot("t1")):
        ours = model_outputs(lm.base_model.model, lm.base_model.tokenizer, kind)
    # as a PEFT user loads it: transformers + bitsandbytes, then (int8) the codes applied weight-only as clora does
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from clora.families.int8_linear import to_weight_only
    from clora.families.quantization import loading_config

    loader = AutoModel if kind == "bert" else AutoModelForCausalLM
    model = loader.from_pretrained(str(tiny_model_dirs[kind]), quantization_config=loading_config(q),
                                   dtype=torch.float32, device_map={"": "cpu"})
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dirs[kind]))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    llm_int8 = model_outputs(model, tokenizer, kind)
    int8_layers = sum(type(m).__name__ == "Linear8bitLt" for m in model.modules())
    assert to_weight_only(model) == int8_layers and int8_layers == (0 if q == "nf4" else 13)  # 6 a layer, pooler
    peft_model = PeftModel.from_pretrained(model, str(out)).eval()
    theirs = model_outputs(peft_model, tokenizer, kind)
    with peft_model.disable_adapter():
        bare = model_outputs(peft_model, tokenizer, kind)
    assert (ours - bare).abs().max() > 1e-3  # the adapter does something
    assert (ours - theirs).abs().max() <= 1e-4
    if q == "int8":  # without the swap, LLM.int8's matmul rounds the activations too: not clora's outputs
        assert (llm_int8 - bare).abs().max() > 1e-4


@pytest.mark.parametrize("kind, q", [("llama", "nf4"), ("t5", "int8")])
def test_demo_gen_on_a_quantized_base_mixes_tasks_as_each_alone(tiny_model_dirs, kind, q, tmp_path):
    result = CliRunner().invoke(cli, ["run", "demo-gen", "--model", str(tiny_model_dirs[kind]), "--quantize", q,
                                      "--rank", "2", "--max-train", "16", "--max-test", "4", "--epochs", "2",
                                      "--lr", "0.01", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["task_metrics"] == ["exact_match"] * 4 and report["overlap"] <= 1e-5
    lm = open_library_model(tmp_path / "run" / "library", progress=False)
    assert lm.base_model.quantization == q
    with torch.no_grad():
        for name, param in lm.base_model.model.named_parameters():
            if ".adapters." in name and name.endswith("lora_B"):
                param.mul_(30.0)  # the snapshots then generate visibly different text
    tasks = [t.as_task() for t in lm.manifest.tasks]
    texts = TEXTS + ["apple oven the recipe"]
    first, second = lm.manifest.names[:2]
    snapshots = [lm.snapshot(first), lm.snapshot(second), [], lm.snapshot(second)]
    masks = torch.zeros(len(texts), len(lm.lora))
    for b, snap in enumerate(snapshots):
        masks[b, snap] = 1.0
    per_input = [tasks[0], tasks[1], tasks[0], tasks[1]]
    mixed = lm.family.generate_mixed(per_input, texts, masks)
    for b, snap in enumerate(snapshots):
        with use_adapters(snap):
            assert mixed[b] == lm.family.generate_mixed([per_input[b]], [texts[b]], None)[0], b
    variants = set()
    for snap in ([], [0], [1]):
        with use_adapters(snap):
            variants.add(tuple(lm.family.generate_mixed([tasks[0]] * 3, texts[:3], None)))
    assert len(variants) == 3


def test_compare_and_the_python_api_take_a_quantization(tiny_model_dirs, tmp_path):
    from clora import RunConfig, open_library, run_stream

    result = CliRunner().invoke(cli, ["compare", _stream(tmp_path), "--methods", "inc,orth", "--model",
                                      str(tiny_model_dirs["bert"]), "--rank", "2", "--epochs", "1", "--quantize",
                                      "nf4", "--out", str(tmp_path / "cmp"), "--quiet"])
    assert result.exit_code == 0, result.output
    for method in ("inc", "orth"):
        assert json.loads((tmp_path / "cmp" / method / "report.json").read_text())["settings"]["quantize"] == "nf4"
    quantized = load_base_model(str(tiny_model_dirs["bert"]), quantize="int8")
    report = run_stream(RunConfig(stream=_stream(tmp_path), out=tmp_path / "obj", rank=2, epochs=1, progress=False),
                        model=quantized.model, tokenizer=quantized.tokenizer)  # a model object, as it is
    assert report.settings["quantize"] == "int8"
    with pytest.raises(ConfigError, match="osf trains the base model's own weights, which an int8 base cannot"):
        run_stream(RunConfig(stream=_stream(tmp_path), method="osf", out=tmp_path / "osf", progress=False),
                   model=quantized.model, tokenizer=quantized.tokenizer)
    assert not (tmp_path / "osf").exists()
    library = open_library(tmp_path / "obj" / "library")
    assert library.load().current.lm.base_model.quantization == "int8"
    assert library.load(quantize="nf4").current.lm.base_model.quantization == "nf4"


@pytest.mark.parametrize("args, message", [
    (["--method", "osf", "--quantize", "int8"], "osf trains the base model's own weights, which an int8 base cannot"),
    (["--quantize", "int4"], "Invalid value for '--quantize'"),
])
def test_bad_quantized_runs_are_one_line_and_write_nothing(args, message, tiny_model_dirs, tmp_path):
    result = CliRunner().invoke(cli, ["run", _stream(tmp_path), "--model", str(tiny_model_dirs["bert"]),
                                      "--out", str(tmp_path / "out"), "--quiet", *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_serve_hands_its_quantization_to_the_library(monkeypatch, quantized_runs):
    import clora.serving.inference as inference
    from clora.errors import ConfigError

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise ConfigError("stopped before serving")
    monkeypatch.setattr(inference, "load_library", stop)
    result = CliRunner().invoke(cli, ["serve", str(quantized_runs["bert", "int8"] / "library"), "--quantize", "int8",
                                      "--port", "0"])
    assert "stopped before serving" in result.output and seen["quantize"] == "int8", result.output

"""Generation tasks on the tiny causal and seq2seq models: mixed-adapter greedy generation equals
generating each input alone in its adapter set, and PEFT generates the same tokens."""

import pytest
import torch
from click.testing import CliRunner

from clora.adapters import use_adapters
from clora.cli.main import cli
from clora.data.task import Example, Task
from clora.errors import ModelError
from clora.library.layout import read_manifest
from clora.serving.inference import load_library
from clora.serving.prediction import task_of
from clora.workflows.library_model import open_library_model

TEXTS = ["apple oven the recipe", "river boat very mast quick", "stone flour again", "cloud anchor tide",
         "lamp spoon kitchen", "horse deck crew there"]


def _generation_task(name="g", max_new_tokens=6):
    return Task(name=name, instruction="Which colour", labels=[], train=[Example("x", "red blue")],
                test=[Example("x", "red")], kind="generation", metric="f1", max_new_tokens=max_new_tokens)


def _amplified(lm, factor=30.0):
    """Scale every adapter's B so that the snapshots generate visibly different text."""
    with torch.no_grad():
        for name, param in lm.base_model.model.named_parameters():
            if ".adapters." in name and name.endswith("lora_B"):
                param.mul_(factor)
    return lm


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_mixed_adapter_generation_equals_each_input_alone(kind, library_factory):
    lm = _amplified(open_library_model(library_factory(kind, "orth"), progress=False))
    snapshots = [[0], [0, 1], [], [0, 1], [0], []]
    tasks = [_generation_task(max_new_tokens=n) for n in (6, 6, 4, 6, 2, 6)]  # limits differ per input too
    masks = torch.zeros(len(TEXTS), len(lm.lora))
    for b, snap in enumerate(snapshots):
        masks[b, snap] = 1.0
    mixed = lm.family.generate_mixed(tasks, TEXTS, masks)
    for b, snap in enumerate(snapshots):
        with use_adapters(snap):
            alone = lm.family.generate_mixed([tasks[b]], [TEXTS[b]], None)[0]
        assert mixed[b] == alone, (b, mixed[b], alone)
    assert len(mixed[4].split()) <= 2  # its own limit
    variants = set()
    for snap in ([], [0], [0, 1]):
        with use_adapters(snap):
            variants.add(tuple(lm.family.generate_mixed([tasks[0]] * 3, TEXTS[:3], None)))
    assert len(variants) == 3  # the adapter sets really generate differently: a wrong routing would show


def test_a_batch_mixing_classification_and_generation_answers_each_as_its_kind(library_factory):
    lm = _amplified(open_library_model(library_factory("llama", "orth"), progress=False))
    t0 = lm.manifest.tasks[0]
    classify = Task(name="t0", instruction=t0.instruction, labels=list(t0.labels), train=[Example("x", t0.labels[0])],
                    test=[Example("x", t0.labels[0])])
    tasks = [classify, _generation_task(), classify, _generation_task()]
    masks = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    answers = lm.family.predict_mixed(tasks, TEXTS[:4], masks)
    for b, task in enumerate(tasks):
        with use_adapters(torch.nonzero(masks[b]).flatten().tolist()):
            assert answers[b] == lm.family.predict(task, [TEXTS[b]])[0]
    assert answers[0] in t0.labels and answers[2] in t0.labels


def test_the_encoder_family_refuses_generation(library_factory):
    lm = open_library_model(library_factory("bert", "orth"), progress=False)
    with pytest.raises(ModelError, match="the encoder family cannot generate text"):
        lm.family.predict(_generation_task(), ["apple"])


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_an_exported_snapshot_generates_the_same_tokens_under_peft(kind, library_copy, tiny_model_dirs, tmp_path):
    from peft import PeftModel

    from clora.families.loading import load_base_model

    lib = library_copy(kind=kind)
    out = tmp_path / "peft"
    result = CliRunner().invoke(cli, ["library", "export", str(lib), "--task", "t1", "--format", "peft", str(out)])
    assert result.exit_code == 0, result.output
    lm = open_library_model(lib, progress=False)
    task = _generation_task(max_new_tokens=8)
    prompts = [task.format_prompt(t) for t in TEXTS]
    with use_adapters(lm.snapshot("t1")):
        ours = lm.family.generate_tokens(prompts, 8)
    base = load_base_model(str(tiny_model_dirs[kind]))
    peft_model = PeftModel.from_pretrained(base.model, str(out)).eval()
    if kind == "llama":
        ids, attention = lm.family.left_padded(prompts)
        inputs, start = {"input_ids": ids, "attention_mask": attention}, ids.shape[1]
    else:
        inputs = dict(lm.family.tokenize(prompts, padding=True, truncation=True, return_tensors="pt"))
        start = 1
    tok = base.tokenizer
    with torch.no_grad():
        theirs = peft_model.generate(**inputs, max_new_tokens=8, do_sample=False, num_beams=1,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    assert ours == lm.family.cut_at_eos(theirs[:, start:])
    with torch.no_grad(), peft_model.disable_adapter():
        bare = peft_model.generate(**inputs, max_new_tokens=8, do_sample=False, num_beams=1,
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if kind == "llama":  # (the tiny t5's trained adapters do not change its greedy text; see the import test)
        assert ours != lm.family.cut_at_eos(bare[:, start:])  # the adapter changes the text


def _greedy(model, tok, inputs, n=8):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=n, do_sample=False, num_beams=1,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)


@pytest.mark.parametrize("kind,targets", [("llama", ["q_proj", "v_proj"]), ("t5", ["q", "v"])])
def test_a_peft_adapter_imported_into_clora_generates_the_same_tokens(kind, targets, library_copy, tiny_model_dirs,
                                                                       tmp_path):
    from peft import LoraConfig, get_peft_model

    from clora.families.loading import load_base_model

    lib = library_copy(kind=kind)
    base = load_base_model(str(tiny_model_dirs[kind]))
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(base.model, config).eval()
    peft_model.save_pretrained(str(tmp_path / "made-by-peft"))
    result = CliRunner().invoke(cli, ["library", "import", str(lib), str(tmp_path / "made-by-peft"),
                                      "--name", "imported", "--kind", "generation", "--metric", "f1",
                                      "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    entry = read_manifest(lib)["tasks"][-1]
    assert (entry["kind"], entry["metric"], entry["max_new_tokens"], entry["labels"]) == ("generation", "f1", 8, [])
    listed = CliRunner().invoke(cli, ["library", "list", str(lib)]).output.splitlines()
    assert listed[-1].split()[:4] == ["imported", "peft", "4", "text"] and " f1 " in listed[-1]
    assert " accuracy " in listed[1]  # a classification task says so
    lm = open_library_model(lib, progress=False)
    prompts = [task_of(entry).format_prompt(t) for t in TEXTS]
    with use_adapters(lm.snapshot("imported")):
        ours = lm.family.generate_tokens(prompts, 8)
    if kind == "llama":
        ids, attention = lm.family.left_padded(prompts)
        inputs, start = {"input_ids": ids, "attention_mask": attention}, ids.shape[1]
    else:
        inputs, start = dict(lm.family.tokenize(prompts, padding=True, truncation=True, return_tensors="pt")), 1
    assert ours == lm.family.cut_at_eos(_greedy(peft_model, base.tokenizer, inputs)[:, start:])
    with peft_model.disable_adapter():
        bare = lm.family.cut_at_eos(_greedy(peft_model, base.tokenizer, inputs)[:, start:])
    assert ours != bare  # the imported adapter changes the text, so equality above is not vacuous
    served = load_library(lib).predict(TEXTS[:2], mode="oracle", task="imported")
    assert [p.prediction for p in served] == [lm.family.decode_answer(ids) for ids in ours[:2]]

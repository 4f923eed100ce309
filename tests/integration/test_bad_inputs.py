"""Every bad input, in every command: one ``Error:`` line, a non-zero exit, no traceback, nothing changed.

Each case runs one ``clora`` command line (click's CliRunner) in a fresh world: a copy of
a tiny 2-task library, a good stream, good task data and a good PEFT export, plus the
bad file the case writes. Every file and folder under the world is hashed before and
after; they must be byte-identical (a failed ``run`` leaves no ``--out``, a failed
``import`` no task folder). The cases include every one the library issue listed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from clora.cli.main import cli
from clora.library.layout import sha256_file
from clora.library.readers import READERS

GOOD_TASK = "  - {name: %s, format: synthetic, instruction: Which colour, options: {domain: cooking, n_train: 8, n_test: 4}}\n"
GOOD_STREAM = "tasks:\n" + GOOD_TASK % "a" + GOOD_TASK % "b"
ROWS = [{"sentence": f"note number {i} about boats", "label": "red" if i % 2 else "blue"} for i in range(12)]


@dataclass
class World:
    root: Path
    lib: Path
    bert: Path
    gpt2: Path

    def write(self, rel: str, content) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def manifest(self) -> dict:
        return json.loads((self.lib / "manifest.json").read_text())

    def edit_manifest(self, change) -> None:
        """Apply ``change(manifest)`` to manifest.json (the version file keeps the original)."""
        manifest = self.manifest()
        change(manifest)
        (self.lib / "manifest.json").write_text(json.dumps(manifest))

    def task(self, manifest: dict, name: str = "t0") -> dict:
        return next(t for t in manifest["tasks"] if t["name"] == name)

    def edit_peft(self, config=None, tensors=None) -> None:
        if config is not None:
            path = self.root / "peft" / "adapter_config.json"
            path.write_text(json.dumps(config(json.loads(path.read_text()))))
        if tensors is not None:
            path = self.root / "peft" / "adapter_model.safetensors"
            save_file(tensors(load_file(str(path))), str(path))


def _state(root: Path) -> dict:
    """Every file (sha256) and folder under ``root``; a reader's empty pin folder does not count."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name == READERS:
            continue
        state[rel] = sha256_file(path) if path.is_file() else ("dir" if path.is_dir() else "other")
    return state


@pytest.fixture(scope="module")
def seed_world(library_factory, tiny_model_dirs, tmp_path_factory):
    """A world to copy: library, good stream, task data, PEFT export of t0."""
    root = tmp_path_factory.mktemp("seed-world")
    shutil.copytree(library_factory("bert", "orth"), root / "lib")
    (root / "stream.yaml").write_text(GOOD_STREAM)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "inputs.txt").write_text("a note\nanother note\n")
    result = CliRunner().invoke(cli, ["library", "export", str(root / "lib"), "--task", "t0", "--format", "peft",
                                      str(root / "peft")])
    assert result.exit_code == 0, result.output
    shutil.rmtree(root / "lib" / READERS, ignore_errors=True)
    return root


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _wrong_shape(world: World, kind: str) -> None:
    task = world.task(world.manifest())
    path = world.lib / task[kind]
    tensors = load_file(str(path))
    key = next(iter(tensors))
    tensors[key] = tensors[key][:-1].contiguous()  # one row short
    save_file(tensors, str(path))
    world.edit_manifest(lambda m: m["files"].__setitem__(task[kind], sha256_file(path)))  # a consistent lie


def _nan_peft(world: World) -> None:
    world.edit_peft(tensors=lambda t: {k: v * float("nan") for k, v in t.items()})


def _first_b(t: dict) -> str:
    return next(k for k in sorted(t) if "lora_B" in k)


def _first_a(t: dict) -> str:
    return next(k for k in sorted(t) if "lora_A" in k)


def _stream(text) -> callable:
    return lambda w: w.write("bad.yaml", text)


def _task_stream(entry: str) -> callable:
    return _stream("tasks:\n  - " + entry + "\n")


def _readonly_lock(world: World, monkeypatch) -> None:
    """The library's .lock cannot be opened for writing (a read-only library; as root chmod does not bite)."""
    import clora.library.store as store

    real_open = open

    def guarded(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(store, "open", guarded, raising=False)


def _few_labelled(world: World) -> None:
    """An inbox whose cluster 0 holds 3 labelled records (too few to promote)."""
    from clora.inbox.records import CLUSTERS, Inbox, Record

    inbox = Inbox(world.lib)
    records = [Record(f"fever {i}", kind="feedback", label="red") for i in range(3)]
    inbox.append(records)
    (inbox.folder / CLUSTERS).write_text(json.dumps({"clusters": {"0": [r.id for r in records]}}))


RUN = ["run", "{root}/stream.yaml", "--model", "{bert}", "--out", "{root}/out", "--quiet", "--epochs", "1"]
BAD_RUN = ["run", "{root}/bad.yaml", "--model", "{bert}", "--out", "{root}/out", "--quiet"]
ADD = ["add-task", "{lib}", "--name", "new", "--train", "{root}/train.jsonl", "--quiet", "--epochs", "1"]
IMPORT = ["library", "import", "{lib}", "{root}/peft", "--name", "imp", "--labels", "a,b"]
PREDICT = ["predict", "{lib}", "a note"]
SERVE = ["serve", "{lib}"]

# (id, command line, prepare(world) or prepare(world, monkeypatch) or None)
CASES = [
    # --- clora run: the stream file -------------------------------------------------------------
    ("run-stream-missing", ["run", "{root}/nope.yaml", "--out", "{root}/out"], None),
    ("run-stream-is-folder", ["run", "{root}", "--out", "{root}/out"], None),
    ("run-unknown-shipped-stream", ["run", "no-such-stream", "--out", "{root}/out"], None),
    ("run-stream-not-utf8", BAD_RUN, _stream(b"tasks:\n  - {name: \xff\xfe, format: synthetic}\n")),
    ("run-stream-bad-yaml", BAD_RUN, _stream("tasks: [\n")),
    ("run-stream-a-list", BAD_RUN, _stream("- a\n- b\n")),
    ("run-stream-no-tasks", BAD_RUN, _stream("name: x\n")),
    ("run-stream-empty-tasks", BAD_RUN, _stream("tasks: []\n")),
    ("run-stream-tasks-a-string", BAD_RUN, _stream("tasks: abc\n")),
    ("run-stream-empty-file", BAD_RUN, _stream("")),
    ("run-task-not-mapping", BAD_RUN, _stream("tasks:\n  - just-a-name\n")),
    ("run-task-no-name", BAD_RUN, _task_stream("{format: synthetic}")),
    ("run-task-no-format", BAD_RUN, _task_stream("{name: a}")),
    ("run-task-unknown-key", BAD_RUN, _task_stream("{name: a, format: synthetic, colour: red}")),
    ("run-task-unknown-format", BAD_RUN, _task_stream("{name: a, format: parquet, path: x}")),
    ("run-task-name-trailing-newline", BAD_RUN, _task_stream('{name: "abc\\n", format: synthetic}')),
    ("run-task-name-slash", BAD_RUN, _task_stream("{name: a/b, format: synthetic}")),
    ("run-task-name-dotdot", BAD_RUN, _task_stream("{name: '..', format: synthetic}")),
    ("run-task-name-number", BAD_RUN, _task_stream("{name: 5, format: synthetic}")),
    ("run-task-name-empty", BAD_RUN, _task_stream("{name: '', format: synthetic}")),
    ("run-task-duplicate-names", BAD_RUN, _stream("tasks:\n" + GOOD_TASK % "a" + GOOD_TASK % "a")),
    ("run-test-size-abc", BAD_RUN, _task_stream("{name: a, format: jsonl, path: train.jsonl, test_size: abc}")),
    ("run-test-size-1.5", BAD_RUN, _task_stream("{name: a, format: jsonl, path: train.jsonl, test_size: 1.5}")),
    ("run-keywords-a-string", BAD_RUN, _task_stream("{name: a, format: synthetic, triggers: {keywords: abc}}")),
    ("run-triggers-a-list", BAD_RUN, _task_stream("{name: a, format: synthetic, triggers: [a]}")),
    ("run-trigger-regex-invalid", BAD_RUN, _task_stream("{name: a, format: synthetic, triggers: {regex: ['(']}}")),
    ("run-trigger-regex-backtracks", BAD_RUN,
     _task_stream("{name: a, format: synthetic, triggers: {regex: ['(a+)+$']}}")),
    ("run-trigger-unknown-kind", BAD_RUN, _task_stream("{name: a, format: synthetic, triggers: {emoji: [x]}}")),
    ("run-labels-empty", BAD_RUN, _task_stream("{name: a, format: synthetic, labels: []}")),
    ("run-labels-a-string", BAD_RUN, _task_stream("{name: a, format: synthetic, labels: red}")),
    ("run-instruction-a-list", BAD_RUN, _task_stream("{name: a, format: synthetic, instruction: [x]}")),
    ("run-jsonl-no-path", BAD_RUN, _task_stream("{name: a, format: jsonl}")),
    ("run-jsonl-missing-file", BAD_RUN, _task_stream("{name: a, format: jsonl, path: missing.jsonl}")),
    ("run-jsonl-bad-line", BAD_RUN, lambda w: (w.write("bad.jsonl", '{"sentence": "x", "label": "a"}\n{oops\n'),
                                               _task_stream("{name: a, format: jsonl, path: bad.jsonl}")(w))),
    ("run-jsonl-no-label-field", BAD_RUN, lambda w: (w.write("bad.jsonl", '{"sentence": "x"}\n' * 10),
                                                     _task_stream("{name: a, format: jsonl, path: bad.jsonl}")(w))),
    ("run-jsonl-one-label", BAD_RUN, lambda w: (w.write("bad.jsonl", '{"sentence": "x", "label": "a"}\n' * 10),
                                                _task_stream("{name: a, format: jsonl, path: bad.jsonl}")(w))),
    ("run-jsonl-one-row", BAD_RUN, lambda w: (w.write("bad.jsonl", '{"sentence": "x", "label": "a"}\n'),
                                              _task_stream("{name: a, format: jsonl, path: bad.jsonl}")(w))),
    ("run-jsonl-not-utf8", BAD_RUN, lambda w: (w.write("bad.jsonl", b'{"sentence": "\xff", "label": "a"}\n' * 10),
                                               _task_stream("{name: a, format: jsonl, path: bad.jsonl}")(w))),
    ("run-csv-no-text-column", BAD_RUN, lambda w: (w.write("bad.csv", "text,label\nx,a\ny,b\n" * 5),
                                                   _task_stream("{name: a, format: csv, path: bad.csv}")(w))),
    ("run-cl-benchmark-missing-dir", BAD_RUN + ["--data-dir", "{root}/nowhere"],
     _task_stream("{name: a, format: cl_benchmark, path: NoSuchTask}")),
    ("run-options-a-string", BAD_RUN, _task_stream("{name: a, format: synthetic, options: abc}")),
    # --- clora run: options ---------------------------------------------------------------------
    ("run-seed-negative", RUN + ["--seed", "-1"], None),
    ("run-seed-not-int", RUN + ["--seed", "abc"], None),
    ("run-seed-2-32", RUN + ["--seed", "4294967296"], None),
    ("run-max-length-beyond-positions", RUN + ["--max-length", "100000"], None),
    ("predict-library-max-length-beyond-positions", PREDICT,
     lambda w: w.edit_manifest(lambda m: m["settings"].update(max_length=100000))),
    ("run-min-steps-negative", RUN + ["--min-steps", "-1"], None),
    ("run-max-train-0", RUN + ["--max-train", "0"], None),
    ("run-max-test-negative", RUN + ["--max-test", "-1"], None),
    ("run-rank-0", RUN + ["--rank", "0"], None),
    ("run-epochs-0", RUN + ["--epochs", "0"], None),
    ("run-lr-negative", RUN + ["--lr", "-1"], None),
    ("run-lr-nan", RUN + ["--lr", "nan"], None),
    ("run-frame-lr-negative", RUN + ["--frame-lr", "-0.1"], None),
    ("run-alpha-0", RUN + ["--alpha", "0"], None),
    ("run-batch-size-0", RUN + ["--batch-size", "0"], None),
    ("run-method-unknown", RUN + ["--method", "lwf"], None),
    ("run-energy-above-1", RUN + ["--energy", "1.5"], None),
    ("run-retraction-unknown", RUN + ["--retraction", "polar"], None),
    ("run-subspace-unknown", RUN + ["--subspace", "random"], None),
    ("run-lambda1-negative", RUN + ["--lambda1", "-1"], None),
    ("run-taylor-order-0", RUN + ["--taylor-order", "0"], None),
    ("run-temperature-0", RUN + ["--temperature", "0"], None),
    ("run-max-length-0", RUN + ["--max-length", "0"], None),
    ("run-router-tokens-0", RUN + ["--router-tokens", "0"], None),
    ("run-router-layer-99", RUN + ["--router-layer", "99"], None),
    ("run-targets-unknown-module", RUN + ["--targets", "nosuchmodule"], None),
    ("run-model-missing-folder", ["run", "{root}/stream.yaml", "--model", "{root}/no-model", "--out", "{root}/out"],
     None),
    ("run-device-cuda-absent", RUN + ["--device", "cuda"], None),
    ("run-device-unknown", RUN + ["--device", "tpu"], None),
    ("run-precision-unknown", RUN + ["--precision", "fp8"], None),
    ("run-out-below-a-file", ["run", "{root}/stream.yaml", "--model", "{bert}", "--out", "{root}/train.jsonl/out"],
     None),
    ("run-out-is-a-file", ["run", "{root}/stream.yaml", "--model", "{bert}", "--out", "{root}/train.jsonl"], None),
    ("run-unknown-option", RUN + ["--colour", "red"], None),
    # --- clora compare ----------------------------------------------------------------------------
    ("compare-methods-unknown", ["compare", "{root}/stream.yaml", "--methods", "seq,lwf", "--out", "{root}/cmp"], None),
    ("compare-methods-empty", ["compare", "{root}/stream.yaml", "--methods", "", "--out", "{root}/cmp"], None),
    ("compare-jobs-0", ["compare", "{root}/stream.yaml", "--jobs", "0", "--out", "{root}/cmp"], None),
    ("compare-seeds-not-ints", ["compare", "{root}/stream.yaml", "--seeds", "a,b", "--out", "{root}/cmp"], None),
    ("compare-reference-not-run", ["compare", "{root}/stream.yaml", "--methods", "seq,orth", "--seeds", "0,1",
                                   "--reference", "olie", "--out", "{root}/cmp"], None),
    ("compare-stream-missing", ["compare", "{root}/nope.yaml", "--out", "{root}/cmp"], None),
    ("compare-out-below-a-file", ["compare", "{root}/stream.yaml", "--model", "{bert}",
                                  "--out", "{root}/train.jsonl/cmp"], None),
    # --- clora add-task ---------------------------------------------------------------------------
    ("add-library-missing", ["add-task", "{root}/nolib", "--name", "new", "--train", "{root}/train.jsonl"], None),
    ("add-library-is-file", ["add-task", "{root}/train.jsonl", "--name", "new", "--train", "{root}/train.jsonl"], None),
    ("add-name-with-space", ["add-task", "{lib}", "--name", "a b", "--train", "{root}/train.jsonl"], None),
    ("add-name-trailing-newline", ["add-task", "{lib}", "--name", "abc\n", "--train", "{root}/train.jsonl"], None),
    ("add-name-exists", ["add-task", "{lib}", "--name", "t0", "--train", "{root}/train.jsonl"], None),
    ("add-train-missing", ["add-task", "{lib}", "--name", "new", "--train", "{root}/nope.jsonl"], None),
    ("add-train-empty", ["add-task", "{lib}", "--name", "new", "--train", "{root}/empty.jsonl"],
     lambda w: w.write("empty.jsonl", "")),
    ("add-train-bad-json", ["add-task", "{lib}", "--name", "new", "--train", "{root}/bad.jsonl"],
     lambda w: w.write("bad.jsonl", "{not json\n")),
    ("add-train-not-utf8", ["add-task", "{lib}", "--name", "new", "--train", "{root}/bad.jsonl"],
     lambda w: w.write("bad.jsonl", b'{"sentence": "\xff\xfe", "label": "a"}\n' * 10)),
    ("add-text-field-missing", ADD + ["--text-field", "body"], None),
    ("add-labels-one", ADD + ["--labels", "red"], None),
    ("add-labels-not-in-data", ADD + ["--labels", "green,yellow"], None),
    ("add-eval-unknown-task", ADD + ["--eval", "t9={root}/train.jsonl"], None),
    ("add-eval-no-equals", ADD + ["--eval", "t0"], None),
    ("add-eval-missing-file", ADD + ["--eval", "t0={root}/nope.jsonl"], None),
    ("add-trigger-regex-invalid", ADD + ["--trigger", "regex:("], None),
    ("add-trigger-regex-backtracks", ADD + ["--trigger", "regex:(a+)+$"], None),
    ("add-trigger-empty", ADD + ["--trigger", ""], None),
    ("add-max-train-0", ADD + ["--max-train", "0"], None),
    ("add-max-test-negative", ADD + ["--max-test", "-1"], None),
    ("add-epochs-0", ADD + ["--epochs", "0"], None),
    ("add-lr-negative", ADD + ["--lr", "-1"], None),
    ("add-seed-negative", ADD + ["--seed", "-1"], None),
    ("add-seed-2-32", ADD + ["--seed", "4294967296"], None),
    ("add-margin-nan", ADD + ["--margin", "nan"], None),
    ("add-margin-inf", ADD + ["--margin", "inf"], None),
    ("add-min-steps-negative", ADD + ["--min-steps", "-1"], None),
    ("add-missing-field-lists-fields", ADD + ["--text-field", "text"], None),
    ("add-batch-size-0", ADD + ["--batch-size", "0"], None),
    ("add-other-base-model", ADD + ["--model", "{gpt2}"], None),
    ("add-device-unknown", ADD + ["--device", "tpu"], None),
    ("add-lock-is-a-folder", ADD, lambda w: (w.lib / ".lock").unlink() or (w.lib / ".lock").mkdir()),
    ("add-read-only-library", ADD, _readonly_lock),
    # --- clora library list / show / verify ----------------------------------------------------
    ("list-missing", ["library", "list", "{root}/nolib"], None),
    ("list-a-file", ["library", "list", "{root}/train.jsonl"], None),
    ("list-no-manifest", ["library", "list", "{root}/empty-folder"], lambda w: (w.root / "empty-folder").mkdir()),
    ("show-missing", ["library", "show", "{root}/nolib"], None),
    ("verify-missing", ["library", "verify", "{root}/nolib"], None),
    ("verify-a-file", ["library", "verify", "{root}/train.jsonl"], None),
    # --- clora library remove / rollback --------------------------------------------------------
    ("remove-missing-path", ["library", "remove", "{root}/nolib", "t0"], None),
    ("remove-a-file", ["library", "remove", "{root}/train.jsonl", "t0"], None),
    ("remove-unknown-task", ["library", "remove", "{lib}", "t9"], None),
    ("remove-read-only-library", ["library", "remove", "{lib}", "t0"], _readonly_lock),
    ("rollback-missing-path", ["library", "rollback", "{root}/nolib"], None),
    ("rollback-a-file", ["library", "rollback", "{root}/train.jsonl"], None),
    ("rollback-no-previous", ["library", "rollback", "{lib}"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("previous_version", None))),
    ("rollback-read-only-library", ["library", "rollback", "{lib}"], _readonly_lock),
    # --- clora library export -------------------------------------------------------------------
    ("export-unknown-task", ["library", "export", "{lib}", "--task", "t9", "--format", "peft", "{root}/exp"], None),
    ("export-all-and-task", ["library", "export", "{lib}", "--all", "--task", "t0", "{root}/exp"], None),
    ("export-neither-all-nor-task", ["library", "export", "{lib}", "{root}/exp"], None),
    ("export-all-into-a-full-folder", ["library", "export", "{lib}", "--all", "{root}/full"],
     lambda w: w.write("full/keep.txt", "mine")),
    ("export-unknown-format", ["library", "export", "{lib}", "--task", "t0", "--format", "gguf", "{root}/exp"], None),
    ("export-missing-library", ["library", "export", "{root}/nolib", "--task", "t0", "--format", "peft",
                                "{root}/exp"], None),
    ("export-out-below-a-file", ["library", "export", "{lib}", "--task", "t0", "--format", "peft",
                                 "{root}/train.jsonl/exp"], None),
    ("export-tampered-adapter", ["library", "export", "{lib}", "--task", "t0", "--format", "peft", "{root}/exp"],
     lambda w: (w.lib / w.task(w.manifest())["adapter"]).write_bytes(b"changed")),
    # --- clora library import -------------------------------------------------------------------
    ("import-missing-library", ["library", "import", "{root}/nolib", "{root}/peft", "--name", "imp",
                                "--labels", "a,b"], None),
    ("import-library-a-file", ["library", "import", "{root}/train.jsonl", "{root}/peft", "--name", "imp",
                               "--labels", "a,b"], None),
    ("import-peft-missing", ["library", "import", "{lib}", "{root}/nopeft", "--name", "imp", "--labels", "a,b"], None),
    ("import-peft-a-file", ["library", "import", "{lib}", "{root}/train.jsonl", "--name", "imp", "--labels", "a,b"],
     None),
    ("import-r-0", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "r": 0})),
    ("import-alpha-nan", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "lora_alpha": float("nan")})),
    ("import-alpha-1e308", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "lora_alpha": 1e308})),
    ("import-r-string", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "r": "2"})),
    ("import-r-missing", IMPORT, lambda w: w.edit_peft(config=lambda c: {k: v for k, v in c.items() if k != "r"})),
    ("import-r-bool", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "r": True})),
    ("import-alpha-string", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "lora_alpha": "x"})),
    ("import-config-not-json", IMPORT, lambda w: w.write("peft/adapter_config.json", "{oops")),
    ("import-config-a-list", IMPORT, lambda w: w.write("peft/adapter_config.json", "[]")),
    ("import-config-not-utf8", IMPORT, lambda w: w.write("peft/adapter_config.json", b"\xff\xfe{}")),
    ("import-dora", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "use_dora": True})),
    ("import-not-lora", IMPORT, lambda w: w.edit_peft(config=lambda c: {**c, "peft_type": "IA3"})),
    ("import-weights-missing", IMPORT, lambda w: (w.root / "peft" / "adapter_model.safetensors").unlink()),
    ("import-weights-empty", IMPORT, lambda w: w.write("peft/adapter_model.safetensors", b"")),
    ("import-weights-corrupt", IMPORT, lambda w: w.write("peft/adapter_model.safetensors", b"\x08\x00" + b"x" * 64)),
    ("import-weights-truncated", IMPORT, lambda w: w.write(
        "peft/adapter_model.safetensors", (w.root / "peft" / "adapter_model.safetensors").read_bytes()[:100])),
    ("import-wrong-d-out", IMPORT, lambda w: w.edit_peft(
        tensors=lambda t: {**t, _first_b(t): t[_first_b(t)][:-1].contiguous()})),
    ("import-ranks-disagree", IMPORT, lambda w: w.edit_peft(
        tensors=lambda t: {**t, _first_a(t): t[_first_a(t)][:1].contiguous()})),
    ("import-nan-factors", IMPORT, _nan_peft),
    ("import-integer-factors", IMPORT, lambda w: w.edit_peft(tensors=lambda t: {k: v.to(torch.int32) for k, v in t.items()})),
    ("import-module-missing", IMPORT, lambda w: w.edit_peft(
        tensors=lambda t: {k: v for k, v in t.items() if k not in (_first_a(t), _first_b(t))})),
    ("import-labels-one", ["library", "import", "{lib}", "{root}/peft", "--name", "imp", "--labels", "a"], None),
    ("import-no-labels", ["library", "import", "{lib}", "{root}/peft", "--name", "imp"], None),
    ("import-generation-with-labels", IMPORT + ["--kind", "generation"], None),
    ("import-metric-unknown", IMPORT + ["--kind", "generation", "--metric", "bleu"], None),
    ("add-generation-on-an-encoder", ADD + ["--kind", "generation"], None),
    ("add-metric-without-generation", ADD + ["--metric", "f1"], None),
    ("add-generation-with-labels", ADD + ["--kind", "generation", "--labels", "red,green"], None),
    ("add-max-new-tokens-0", ADD + ["--kind", "generation", "--max-new-tokens", "0"], None),
    ("import-name-invalid", ["library", "import", "{lib}", "{root}/peft", "--name", "../x", "--labels", "a,b"], None),
    ("import-name-exists", ["library", "import", "{lib}", "{root}/peft", "--name", "t0", "--labels", "a,b"], None),
    ("import-trigger-regex-invalid", IMPORT + ["--trigger", "regex:("], None),
    ("import-trigger-regex-backtracks", IMPORT + ["--trigger", "regex:(a+)+$"], None),
    ("import-read-only-library", IMPORT, _readonly_lock),
    # --- a damaged manifest, seen by list / show / predict --------------------------------------
    ("manifest-not-json", ["library", "list", "{lib}"], lambda w: (w.lib / "manifest.json").write_text("{oops")),
    ("manifest-empty", ["library", "show", "{lib}"], lambda w: (w.lib / "manifest.json").write_text("")),
    ("manifest-a-list", ["library", "list", "{lib}"], lambda w: (w.lib / "manifest.json").write_text("[]")),
    ("manifest-not-utf8", ["library", "list", "{lib}"], lambda w: (w.lib / "manifest.json").write_bytes(b"\xff{")),
    ("manifest-format-newer", ["library", "list", "{lib}"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("format_version", 99))),
    ("manifest-version-string", ["library", "show", "{lib}"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("version", "abc"))),
    ("manifest-version-string-predict", PREDICT, lambda w: w.edit_manifest(lambda m: m.__setitem__("version", "abc"))),
    ("manifest-version-string-remove", ["library", "remove", "{lib}", "t0"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("version", "abc"))),
    ("manifest-snapshot-int", PREDICT, lambda w: w.edit_manifest(lambda m: w.task(m).__setitem__("snapshot", 5))),
    ("manifest-snapshot-int-list", ["library", "list", "{lib}"],
     lambda w: w.edit_manifest(lambda m: w.task(m).__setitem__("snapshot", 5))),
    ("manifest-router-string", PREDICT, lambda w: w.edit_manifest(lambda m: m.__setitem__("router", "x"))),
    ("manifest-router-layer-99", PREDICT, lambda w: w.edit_manifest(lambda m: m["router"].__setitem__("layer", 99))),
    ("manifest-router-threshold-string", PREDICT,
     lambda w: w.edit_manifest(lambda m: m["router"].__setitem__("threshold", "high"))),
    ("manifest-tasks-a-string", ["library", "list", "{lib}"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("tasks", "t0"))),
    ("manifest-files-a-list", ["library", "show", "{lib}"],
     lambda w: w.edit_manifest(lambda m: m.__setitem__("files", []))),
    ("manifest-labels-a-string", PREDICT, lambda w: w.edit_manifest(lambda m: w.task(m).__setitem__("labels", "ab"))),
    ("manifest-labels-list-cmd", ["library", "list", "{lib}"],
     lambda w: w.edit_manifest(lambda m: w.task(m).__setitem__("labels", 3))),
    ("manifest-modules-a-list", PREDICT, lambda w: w.edit_manifest(lambda m: m.__setitem__("modules", []))),
    ("manifest-settings-a-string", PREDICT, lambda w: w.edit_manifest(lambda m: m.__setitem__("settings", "x"))),
    ("manifest-rank-string", PREDICT,
     lambda w: w.edit_manifest(lambda m: m["settings"].__setitem__("rank", "two"))),
    ("manifest-scaling-string", PREDICT, lambda w: w.edit_manifest(lambda m: m.__setitem__("scaling", "x"))),
    ("manifest-adapter-absolute", PREDICT, lambda w: w.edit_manifest(
        lambda m: w.task(m).__setitem__("adapter", "/etc/passwd") or m["files"].__setitem__("/etc/passwd", "0"))),
    ("manifest-adapter-dotdot", PREDICT, lambda w: w.edit_manifest(
        lambda m: w.task(m).__setitem__("adapter", "../x") or m["files"].__setitem__("../x", "0"))),
    ("manifest-triggers-bad-regex", PREDICT, lambda w: w.edit_manifest(
        lambda m: w.task(m).__setitem__("triggers", {"regex": ["("]}))),
    ("manifest-base-missing", PREDICT, lambda w: w.edit_manifest(
        lambda m: m.__setitem__("base_model", str(w.root / "no-model")))),
    ("subspace-wrong-shape-add-task", ADD, lambda w: _wrong_shape(w, "subspace")),
    ("subspace-wrong-shape-verify", ["library", "verify", "{lib}"], lambda w: _wrong_shape(w, "subspace")),
    ("router-stats-wrong-shape", PREDICT, lambda w: _wrong_shape(w, "router")),
    ("adapter-wrong-shape", PREDICT, lambda w: _wrong_shape(w, "adapter")),
    ("adapter-tampered", PREDICT, lambda w: (w.lib / w.task(w.manifest())["adapter"]).write_bytes(b"changed")),
    ("adapter-deleted", PREDICT, lambda w: (w.lib / w.task(w.manifest())["adapter"]).unlink()),
    # --- clora predict ----------------------------------------------------------------------------
    ("predict-missing-library", ["predict", "{root}/nolib", "a note"], None),
    ("predict-library-a-file", ["predict", "{root}/train.jsonl", "a note"], None),
    ("predict-input-missing", ["predict", "{lib}", "--input", "{root}/nope.txt"], None),
    ("predict-input-nested-100000", ["predict", "{lib}", "--input", "{root}/deep.txt"],
     lambda w: w.write("deep.txt", '{"a": ' * 100000 + "1" + "}" * 100000 + "\n")),
    ("predict-input-nested-object", ["predict", "{lib}", "--input", "{root}/deep.txt"],
     lambda w: w.write("deep.txt", '{"input": ' + _nested(100000) + "}\n")),
    ("predict-input-dev-zero", ["predict", "{lib}", "--input", "/dev/zero"], None),
    ("predict-input-fifo", ["predict", "{lib}", "--input", "{root}/fifo"], lambda w: os.mkfifo(w.root / "fifo")),
    ("predict-input-a-folder", ["predict", "{lib}", "--input", "{root}"], None),
    ("inbox-label-file-dev-zero", ["inbox", "{lib}", "label", "--file", "/dev/zero"], None),
    ("predict-input-not-utf8", ["predict", "{lib}", "--input", "{root}/bad.txt"],
     lambda w: w.write("bad.txt", b"\xff\xfe note\n")),
    ("predict-input-json-no-input", ["predict", "{lib}", "--input", "{root}/bad.txt"],
     lambda w: w.write("bad.txt", '{"text": "x"}\n')),
    ("predict-input-empty", ["predict", "{lib}", "--input", "{root}/empty.txt"], lambda w: w.write("empty.txt", "")),
    ("predict-no-inputs", ["predict", "{lib}"], None),
    ("predict-lone-surrogate", ["predict", "{lib}", "a note \ud800"], None),
    ("predict-run-folder", ["predict", "{root}/run", "a note"],
     lambda w: shutil.copytree(w.lib, w.root / "run" / "library")),
    ("predict-arrow-with-precision", PREDICT + ["--router", "arrow", "--precision", "bf16"], None),
    ("predict-task-unknown", PREDICT + ["--task", "t9"], None),
    ("predict-mode-unknown", PREDICT + ["--mode", "best"], None),
    ("predict-threshold-above-1", PREDICT + ["--threshold", "2"], None),
    ("predict-threshold-nan", PREDICT + ["--threshold", "nan"], None),
    ("predict-threshold-not-number", PREDICT + ["--threshold", "x"], None),
    ("predict-fallback-unknown", PREDICT + ["--fallback", "oracle"], None),
    ("predict-device-cuda-absent", PREDICT + ["--device", "cuda"], None),
    ("predict-device-unknown", PREDICT + ["--device", "tpu"], None),
    ("predict-precision-unknown", PREDICT + ["--precision", "fp8"], None),
    # --- clora serve (refused before it listens) ------------------------------------------------
    ("serve-port-99999", SERVE + ["--port", "99999"], None),
    ("serve-port-negative", SERVE + ["--port", "-1"], None),
    ("serve-max-batch-0", SERVE + ["--max-batch", "0"], None),
    ("serve-batch-wait-negative", SERVE + ["--batch-wait-ms", "-1"], None),
    ("serve-max-queue-0", SERVE + ["--max-queue", "0"], None),
    ("serve-max-body-0", SERVE + ["--max-body-bytes", "0"], None),
    ("serve-loop-nice-20", SERVE + ["--loop-nice", "20"], None),
    ("serve-loop-nice-negative", SERVE + ["--loop-nice", "-1"], None),
    ("serve-missing-library", ["serve", "{root}/nolib"], None),
    ("serve-threshold-above-1", SERVE + ["--threshold", "1.5"], None),
    ("serve-device-unknown", SERVE + ["--device", "tpu"], None),
    ("serve-host-unresolvable", SERVE + ["--host", "no-such-host.invalid", "--port", "0"], None),
    ("serve-inbox-max-bytes-tiny", SERVE + ["--inbox-max-bytes", "100"], None),
    ("serve-min-examples-1", SERVE + ["--min-examples", "1"], None),
    ("serve-max-drop-negative", SERVE + ["--max-drop", "-1"], None),
    ("serve-empty-api-key", SERVE + ["--api-key", ""], None),
    ("serve-empty-api-key-variable", SERVE, lambda w, mp: mp.setenv("CLORA_API_KEY", "")),
    ("serve-upstream-not-http", SERVE + ["--upstream", "ftp://x"], None),
    ("serve-empty-admin-key", SERVE + ["--admin-key", ""], None),
    ("serve-empty-admin-key-variable", SERVE, lambda w, mp: mp.setenv("CLORA_ADMIN_KEY", "")),
    ("serve-admin-key-equals-api-key", SERVE + ["--api-key", "k1", "--admin-key", "k1"], None),
    ("serve-client-connections-over-max", SERVE + ["--max-connections", "8", "--max-client-connections", "9"],
     None),
    ("serve-client-connections-0", SERVE + ["--max-client-connections", "0"], None),
    ("serve-header-bytes-tiny", SERVE + ["--max-header-bytes", "10"], None),
    ("serve-inbox-is-the-library", SERVE + ["--inbox", "{lib}"], None),
    ("serve-inbox-inside-the-library", SERVE + ["--inbox", "{lib}/box"], None),
    ("serve-inbox-is-a-file", SERVE + ["--inbox", "{root}/train.jsonl"], None),
    # --- clora inbox ------------------------------------------------------------------------------
    ("inbox-missing-library", ["inbox", "{root}/nolib", "list"], None),
    ("inbox-unknown-subcommand", ["inbox", "{lib}", "frob"], None),
    ("inbox-list-kind-unknown", ["inbox", "{lib}", "list", "--kind", "other"], None),
    ("inbox-cluster-min-size-1", ["inbox", "{lib}", "cluster", "--min-cluster-size", "1"], None),
    ("inbox-promote-not-clustered", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "x"], None),
    ("inbox-promote-bad-name", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "bad name!"], None),
    ("inbox-promote-existing-name", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "t0"], _few_labelled),
    ("inbox-promote-unknown-cluster", ["inbox", "{lib}", "promote", "--cluster", "5", "--name", "x"], _few_labelled),
    ("inbox-promote-too-few-labelled", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "x"], _few_labelled),
    ("inbox-promote-max-drop-negative", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "x",
                                         "--max-drop", "-1"], None),
    ("inbox-promote-no-name", ["inbox", "{lib}", "promote", "--cluster", "0"], None),
    ("inbox-promote-seed-2-32", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "x", "--seed",
                                 "4294967296"], _few_labelled),
    ("inbox-label-odd", ["inbox", "{lib}", "label", "abc"], None),
    ("inbox-label-unknown-id", ["inbox", "{lib}", "label", "abc", "red"], _few_labelled),
    ("inbox-label-empty", ["inbox", "{lib}", "label", "abc", " "], _few_labelled),
    ("inbox-label-file-missing", ["inbox", "{lib}", "label", "--file", "{root}/nofile.jsonl"], None),
    ("inbox-label-file-bad", ["inbox", "{lib}", "label", "--file", "{root}/bad.jsonl"],
     lambda w: w.write("bad.jsonl", '{"id": 1}\n')),
    ("inbox-label-nothing", ["inbox", "{lib}", "label"], None),
    ("inbox-drop-nothing", ["inbox", "{lib}", "drop"], None),
    ("inbox-drop-unknown-id", ["inbox", "{lib}", "drop", "nope"], _few_labelled),
    ("inbox-drop-unknown-cluster", ["inbox", "{lib}", "drop", "--cluster", "3"], _few_labelled),
    ("inbox-inside-the-library", ["inbox", "--inbox", "{lib}/box", "{lib}", "list"], None),
    ("inbox-is-a-file", ["inbox", "--inbox", "{root}/train.jsonl", "{lib}", "list"], None),
    ("inbox-clustering-damaged", ["inbox", "{lib}", "promote", "--cluster", "0", "--name", "x"],
     lambda w: (_few_labelled(w), w.write("lib.inbox/clusters.json", "{not json"))),
    ("inbox-clustering-wrong-shape", ["inbox", "{lib}", "drop", "--cluster", "0"],
     lambda w: (_few_labelled(w), w.write("lib.inbox/clusters.json", '{"clusters": {"0": [[1]]}}'))),
    ("inbox-records-file-is-a-folder", ["inbox", "{lib}", "list"],
     lambda w: (w.root / "lib.inbox" / "records.jsonl").mkdir(parents=True)),
    # --- the group --------------------------------------------------------------------------------
    ("unknown-command", ["train"], None),
    ("unknown-library-command", ["library", "repair", "{lib}"], None),
    ("unknown-top-option", ["--colour"], None),
]


def test_the_list_is_long_enough_and_names_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 120, len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_error_line_and_changes_nothing(case, seed_world, tiny_model_dirs, tmp_path,
                                                           monkeypatch):
    name, args, prepare = case
    root = tmp_path / "w"
    shutil.copytree(seed_world, root)
    world = World(root, root / "lib", tiny_model_dirs["bert"], tiny_model_dirs["gpt2"])
    if prepare is not None:
        if prepare.__code__.co_argcount == 2:
            prepare(world, monkeypatch)
        else:
            prepare(world)
    before = _state(root)
    values = {"root": root, "lib": world.lib, "bert": world.bert, "gpt2": world.gpt2}
    argv = [a.format(**values) for a in args]
    monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, argv)
    output = result.output
    assert result.exit_code not in (0, None), f"{name}: exit 0\n{output}"
    assert "Traceback" not in output and not isinstance(result.exception, (AssertionError,)), output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{name}: uncaught {type(result.exception).__name__}: {result.exception}")
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"{name}:\n{output}"
    assert _state(root) == before, f"{name}: files changed"

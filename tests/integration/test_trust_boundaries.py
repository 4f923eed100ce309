"""Trust boundaries (issue 38): what a library or a request names must never run code or brick anything."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, library_state

from clora.cli.main import cli
from clora.errors import CloraError
from clora.inbox.records import CLUSTERS, RECORDS, Inbox, Record
from clora.inbox.steps import LibraryInbox
from clora.library.layout import read_manifest


def test_a_base_model_folder_that_asks_to_run_its_own_code_is_refused(library_copy, tiny_model_dirs, tmp_path,
                                                                     monkeypatch):
    """A manifest naming a folder with ``auto_map`` is one line: transformers never asks "run the custom code?"
    and the folder's code never runs, whatever the user would answer."""
    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dirs["bert"], evil)
    config = json.loads((evil / "config.json").read_text())
    config["model_type"] = "evil-net"  # a type transformers does not know: only the folder's code could load it
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModel": "evil.Model"}
    (evil / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (evil / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    lib = library_copy()
    manifest = json.loads((lib / "manifest.json").read_text())
    manifest["base_model"] = str(evil)
    (lib / "manifest.json").write_text(json.dumps(manifest))
    read_manifest(lib)  # still a readable library: only its base model is foreign
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "y")  # a user who would say yes
    result = CliRunner().invoke(cli, ["predict", str(lib), "apple oven"])
    assert_one_line_error(result, "asks to run its own code ('auto_map' in config.json)")
    assert not marker.exists() and asked == []
    result = CliRunner().invoke(cli, ["run", "demo", "--model", str(evil), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, "asks to run its own code")
    assert not marker.exists() and not (tmp_path / "run").exists() and asked == []


def test_an_inbox_inside_or_equal_to_its_library_or_a_file_is_refused(library_copy, tmp_path):
    lib = library_copy()
    state = library_state(lib)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for folder, fragment in [(lib, "is inside the library"), (lib / "tasks" / "box", "is inside the library"),
                             (a_file, "is a file, not a folder")]:
        result = CliRunner().invoke(cli, ["inbox", "--inbox", str(folder), str(lib), "list"])
        assert_one_line_error(result, fragment)
        result = CliRunner().invoke(cli, ["serve", str(lib), "--inbox", str(folder), "--port", "70000"])
        assert result.exit_code != 0 and "Traceback" not in result.output
    assert library_state(lib) == state and a_file.read_text() == "mine"


def test_damaged_inbox_files_are_skipped_with_a_count_or_one_line(library_copy):
    lib = library_copy()
    inbox = Inbox(lib)
    good = [Record(input="apple oven"), Record(input="fever nurse", kind="feedback", label="red")]
    inbox.append(good)
    with open(inbox.folder / RECORDS, "ab") as fh:
        fh.write(b'[1, 2]\n{"input": 5}\n{"input": "x", "confidence": "high"}\n{"input": "y", "count": -3}\n'
                 b'\xff\xfe garbage\n{"input": "z", "kind": "weird"}\n')
    assert [r.id for r in inbox.records()] == [r.id for r in good] and inbox.skipped == 6
    listed = CliRunner().invoke(cli, ["inbox", str(lib), "list"])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == 2, listed.output
    (inbox.folder / CLUSTERS).write_text('{"clusters": {"0": [{"not": "an id"}]}}')
    promoted = CliRunner().invoke(cli, ["inbox", str(lib), "promote", "--cluster", "0", "--name", "n", "--quiet"])
    assert_one_line_error(promoted, "saved clustering")
    (inbox.folder / CLUSTERS).write_text("{not json")
    dropped = CliRunner().invoke(cli, ["inbox", str(lib), "drop", "--cluster", "0"])
    assert_one_line_error(dropped, "is damaged; run `clora inbox LIB cluster` again")


def test_repeated_inputs_are_one_record_with_a_count(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    inbox.append([Record(input="the same words") for _ in range(121)] + [Record(input="other words")])
    inbox.append([Record(input="the same words", kind="feedback", label="red") for _ in range(3)])
    records = inbox.records()
    assert [(r.input, r.kind, r.count) for r in records] == [
        ("the same words", "unrouted", 121), ("other words", "unrouted", 1), ("the same words", "feedback", 3)]
    inbox.label({records[1].id: "blue"})  # a rewrite keeps the counts
    assert [r.count for r in inbox.records()] == [121, 1, 3]


def test_a_tampered_task_name_never_leads_feedback_out_of_the_inbox(library_copy, tmp_path):
    lib = library_copy()
    manifest = json.loads((lib / "manifest.json").read_text())
    manifest["tasks"][0]["name"] = "../../../escaped"
    (lib / "manifest.json").write_text(json.dumps(manifest))
    try:
        steps = LibraryInbox(lib)
    except CloraError:
        return  # refused at the disk edge: nothing can be written
    with pytest.raises(CloraError, match="not allowed"):
        steps.feedback("apple", label=manifest["tasks"][0]["labels"][0], task="../../../escaped")
    assert not list(tmp_path.rglob("escaped*"))


def test_a_commit_that_readers_would_refuse_is_refused_by_the_writer(library_copy):
    """One validation for writers and readers: whatever path a writer took, NaN factors or a bad manifest
    field never become a version (the bricked libraries of finding 3 came from three such paths)."""
    import copy

    from safetensors.torch import load_file, save_file

    from clora.library.store import commit, new_stage, write_lock

    lib = library_copy()
    state = library_state(lib)
    current = read_manifest(lib)
    entry = current["tasks"][-1]
    tensors = {k: v.clone() for k, v in load_file(str(lib / entry["adapter"])).items()}
    next(iter(tensors.values()))[0, 0] = float("nan")
    for damage in ("nan factors", "nan margin", "bad name"):
        new = copy.deepcopy(current)
        new_entry = new["tasks"][-1]
        rel_dir = f"tasks/{new_entry['name']}-again"
        new_entry["name"] = new_entry["name"] + "-again"
        new_entry["adapter"] = f"{rel_dir}/{Path(entry['adapter']).name}"
        new_entry["subspace"] = new_entry["router"] = None
        if damage == "nan margin":
            new["router"] = {**(new.get("router") or {}), "margin": float("nan")}
        if damage == "bad name":
            new_entry["name"] = "../up"
        with write_lock(lib):
            stage = new_stage(lib)
            save_file(tensors if damage == "nan factors" else {k: v.nan_to_num() for k, v in tensors.items()},
                      str(stage / Path(entry["adapter"]).name))
            with pytest.raises(CloraError, match="nothing was committed: readers would refuse"):
                commit(lib, current, new, {rel_dir: stage})
            shutil.rmtree(stage)
    assert library_state(lib) == state

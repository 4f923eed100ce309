"""``clora add-task`` and ``clora library`` on tiny libraries: the happy path and every bad input."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, library_state, write_jsonl

from clora.cli.main import cli
from clora.library.build import TaskArtifacts, stage_task
from clora.library.layout import load_manifest, read_manifest
from clora.library.store import commit, write_lock
from clora.library.tensors import load_adapter, load_subspace
from clora.adapters.subspace import orthonormal_basis


def _clora(*args):
    return CliRunner().invoke(cli, [*map(str, args)])




def _add(lib, train, *extra):
    return _clora("add-task", lib, "--name", "t2", "--train", train, "--quiet", *extra)


def test_add_task_trains_orthogonally_and_never_rewrites_old_files(library_copy, new_task_files):
    lib = library_copy()
    train, test = new_task_files
    before = library_state(lib)
    result = _add(lib, train, "--test", test, "--trigger", "invoice")
    assert result.exit_code == 0, result.output
    assert "added 't2'" in result.output and "before  after" in result.output
    after = library_state(lib)
    # every old task file is still there, byte for byte; the new one is added
    assert all(after[rel] == digest for rel, digest in before.items() if rel.startswith("tasks/"))
    manifest = read_manifest(lib)
    assert manifest["version"] == 2 and [t["name"] for t in manifest["tasks"]] == ["t0", "t1", "t2"]
    new = manifest["tasks"][2]
    assert new["snapshot"] == ["t0", "t1", "t2"] and new["triggers"] == {"keywords": ["invoice"]}
    assert new["data"]["test_path"] == str(test.resolve())
    # the new adapter is orthogonal to the subspace stored before it
    old_subspace = load_subspace(lib, {**manifest, "tasks": manifest["tasks"][:2]})
    for name, (a, _) in load_adapter(lib, new["adapter"], manifest["modules"]).items():
        assert (a @ old_subspace[name]).abs().max() < 1e-5
    assert _clora("library", "verify", lib).exit_code == 0
    # the keyword trigger routes to the new task, whatever the learned trigger thinks
    from clora.serving.inference import load_library

    rows = load_library(lib).predict(["apple oven recipe invoice", "apple oven recipe"])
    assert (rows[0]["task"], rows[0]["source"], rows[0]["confidence"]) == ("t2", "trigger", 1.0)
    assert rows[1]["source"] in ("learned", "fallback")


def test_remove_keeps_directions_reserved_and_rollback_undoes_it(library_copy):
    lib = library_copy()
    reserved = {n: u.shape[1] for n, u in load_subspace(lib, read_manifest(lib)).items()}
    result = _clora("library", "remove", lib, "t0")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(lib)
    assert [t["name"] for t in manifest["tasks"]] == ["t1"] and manifest["tasks"][0]["snapshot"] == ["t1"]
    assert {n: u.shape[1] for n, u in load_subspace(lib, manifest).items()} == reserved
    assert _clora("library", "verify", lib).exit_code == 0
    assert _clora("library", "rollback", lib).exit_code == 0
    assert [t["name"] for t in read_manifest(lib)["tasks"]] == ["t0", "t1"]
    assert _clora("library", "rollback", lib).exit_code == 0  # rolling back the rollback
    assert [t["name"] for t in read_manifest(lib)["tasks"]] == ["t1"]
    assert _clora("library", "verify", lib).exit_code == 0


def test_remove_with_release_frees_the_task_directions(library_copy):
    lib = library_copy()
    before = load_subspace(lib, read_manifest(lib))
    assert _clora("library", "remove", lib, "t0", "--release").exit_code == 0
    after = load_subspace(lib, read_manifest(lib))
    assert all(after[n].shape[1] < before[n].shape[1] for n in before)


def test_list_and_show_report_tasks_and_capacity(library_copy):
    lib = library_copy()
    listed = _clora("library", "list", lib)
    assert listed.exit_code == 0 and "t0" in listed.output and "t1" in listed.output
    shown = _clora("library", "show", lib, "--json")
    info = json.loads(shown.output)
    assert info["method"] == "orth" and all(0 < c["reserved"] <= c["d_in"] == 32 for c in info["capacity"].values())


def _exhaust(lib):
    """Reserve every remaining input direction (as a removed task that keeps its directions would)."""
    manifest = read_manifest(lib)
    with write_lock(lib):
        directions = {}
        for name, u in load_subspace(lib, manifest).items():
            full = orthonormal_basis(torch.cat([u, torch.eye(u.shape[0])], dim=1))
            directions[name] = full[:, u.shape[1]:] - u @ (u.T @ full[:, u.shape[1]:])
            directions[name] = orthonormal_basis(directions[name])
        entry = {"name": "filler", "subspace": None}
        rel, stage = stage_task(lib, TaskArtifacts(entry, directions=directions), set(manifest["files"]))
        new = {**manifest, "reserved": [{"name": "filler", "subspace": entry["subspace"]}]}
        commit(lib, manifest, new, {rel: stage})


def _bad_input_cases(tmp_path, train, tiny_model_dirs):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_label = tmp_path / "nolabel.jsonl"
    no_label.write_text('{"sentence": "a kitchen note"}\n' * 10)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\xff\xfe not json at all {{{\n")

    def tamper(lib):
        path = lib / read_manifest(lib)["tasks"][0]["adapter"]
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))

    def newer(lib):
        manifest = json.loads((lib / "manifest.json").read_text())
        manifest["format_version"] = 99
        (lib / "manifest.json").write_text(json.dumps(manifest))

    return {
        "missing file": (None, [tmp_path / "nope.jsonl"], "not found"),
        "unreadable file": (None, [garbage], "cannot read"),
        "duplicate name": (None, [train, "--name", "t1"], "already has a task named 't1'"),
        "no rows": (None, [empty], "has no rows"),
        "no label field": (None, [no_label], "no field 'label'"),
        "label outside --labels": (None, [train, "--labels", "red,green"], "not in its label set"),
        "tampered adapter": (tamper, [train], "checksum mismatch"),
        "newer format": (newer, [train], "newer than this clora supports"),
        "other base model": (None, [train, "--model", tiny_model_dirs["bert-other"]], "other weights"),
        "exhausted subspace": (_exhaust, [train], "no free directions"),
        "missing library": ("missing", [train], "not found"),
    }


@pytest.fixture(scope="session")
def other_bert(tiny_model_dirs, tmp_path_factory):
    from clora.testing import save_tiny

    return save_tiny("bert", tmp_path_factory.mktemp("other") / "bert", seed=1)


CASES = ["missing file", "unreadable file", "duplicate name", "no rows", "no label field", "label outside --labels",
         "tampered adapter", "newer format", "other base model", "exhausted subspace", "missing library"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_leaves_the_library_byte_identical(case, library_copy, new_task_files, tmp_path,
                                                                       tiny_model_dirs, other_bert):
    lib = library_copy()
    train, _ = new_task_files
    prepare, args, fragment = _bad_input_cases(tmp_path, train, {**tiny_model_dirs, "bert-other": other_bert})[case]
    if prepare == "missing":
        lib = tmp_path / "no-such-library"
    elif prepare is not None:
        prepare(lib)
    before = library_state(lib) if lib.exists() else None
    result = _add(lib, *args)  # a later --name overrides _add's
    assert_one_line_error(result, fragment)
    assert (library_state(lib) if lib.exists() else None) == before


def test_a_locked_library_is_refused_with_a_clear_message(library_copy, new_task_files):
    lib = library_copy()
    before = library_state(lib)
    with write_lock(lib):  # another writer holds the library
        result = _add(lib, new_task_files[0])
    assert_one_line_error(result, "is locked")
    assert library_state(lib) == before


def test_verify_names_what_is_wrong(library_copy):
    lib = library_copy()
    (lib / read_manifest(lib)["tasks"][1]["adapter"]).unlink()
    result = _clora("library", "verify", lib)
    assert result.exit_code != 0 and "missing file tasks/t1/adapter.safetensors" in result.output


def test_seq_libraries_cannot_grow(library_copy, new_task_files):
    lib = library_copy(method="seq")
    assert_one_line_error(_add(lib, new_task_files[0]), "add-task needs a method with one adapter per task")


def test_labels_are_read_from_the_training_file(library_copy, tmp_path):
    from clora.data.synthetic import synthetic_examples

    train, _, _ = synthetic_examples("x", {"domain": "finance", "n_train": 24, "n_test": 8})
    lib = library_copy(method="inc")
    result = _add(lib, write_jsonl(tmp_path / "x.jsonl", train))
    assert result.exit_code == 0, result.output
    assert read_manifest(lib)["tasks"][-1]["labels"] == sorted({e.target for e in train})


def test_eval_files_re_evaluate_namedearlier_tasks(library_copy, new_task_files, tmp_path):
    from clora.data.synthetic import synthetic_examples

    _, test, _ = synthetic_examples("t0", {"domain": "cooking", "shift": 0, "n_train": 8, "n_test": 16})
    lib = library_copy()
    result = _add(lib, new_task_files[0], "--eval", f"t0={write_jsonl(tmp_path / 't0.jsonl', test)}")
    assert result.exit_code == 0, result.output
    assert "t0" in result.output and "t1" in result.output
    assert_one_line_error(_add(library_copy(method="inc"), new_task_files[0], "--eval", f"nope={new_task_files[1]}"),
                          "not in the library")


def test_router_settings_given_to_add_task_are_stored_and_used_by_predict(library_copy, new_task_files):
    from clora.library.tensors import load_router_stats
    from clora.serving.inference import load_library

    lib = library_copy()
    result = _add(lib, new_task_files[0], "--threshold", "0.95", "--margin", "2.5", "--fallback", "base")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(lib)
    assert {k: manifest["router"][k] for k in ("threshold", "margin", "fallback")} == \
        {"threshold": 0.95, "margin": 2.5, "fallback": "base"}
    assert "layer" in manifest["router"]  # the read the statistics describe is kept
    loaded = load_library(lib)
    assert (loaded.router_config.threshold, loaded.router_config.margin, loaded.router_config.fallback) == \
        (0.95, 2.5, "base")
    assert load_library(lib, threshold=0.5).router_config.threshold == 0.5  # a caller's setting wins
    new = next(t for t in manifest["tasks"] if t["name"] == "t2")
    assert load_router_stats(lib, new["router"]).heldout > 0  # calibrated when it was learnt
    assert_one_line_error(_clora("add-task", lib, "--name", "t3", "--train", new_task_files[0], "--threshold", "2"),
                          "router threshold must be in [0, 1]")


def test_add_task_reports_routed_mode_beside_sum_mode(library_copy, new_task_files):
    """Routed (what predict and serve answer) before and after, beside sum; "before" is what the run recorded."""
    import clora

    lib = library_copy()
    recorded = {t["name"]: t["metrics"]["routed"] for t in read_manifest(lib)["tasks"]}
    train, test = new_task_files
    result = clora.open_library(lib).add_task("t2", train, test=test, progress=False)
    rows = {row.task: row for row in result.earlier}
    assert set(rows) == {"t0", "t1"}
    for name, row in rows.items():
        assert row.routed_before == recorded[name] and 0.0 <= row.routed_after <= 1.0
    # an earlier task's routed score moves only by the inputs the new task now claims, so it is a measurement
    # of its own (not sum mode's)
    from clora.serving.inference import load_library

    from clora.workflows.add_task import earlier_tasks

    loaded = load_library(lib)
    tasks = {t.name: t for t in earlier_tasks(load_manifest(lib), {})[0]}
    for name, row in rows.items():
        answers = loaded.predict([ex.text for ex in tasks[name].test])
        served = sum(a.prediction == ex.target for a, ex in zip(answers, tasks[name].test)) / len(answers)
        assert row.routed_after == pytest.approx(served)
    manifest = read_manifest(lib)
    assert [t["metrics"]["routed"] for t in manifest["tasks"]] == [rows["t0"].routed_after, rows["t1"].routed_after,
                                                                   result.routed_accuracy]


def test_add_task_prints_routed_and_sum_columns(library_copy, new_task_files):
    lib = library_copy()
    train, test = new_task_files
    result = _add(lib, train, "--test", test)
    assert result.exit_code == 0, result.output
    assert "routed before  after  change   sum before  after  change" in result.output
    assert "routed is what predict and serve answer" in result.output


def test_add_task_measures_routed_before_when_the_library_recorded_none(library_copy, new_task_files):
    import clora

    lib = library_copy()
    manifest = read_manifest(lib)
    recorded = {t["name"]: t["metrics"].pop("routed") for t in manifest["tasks"]}
    with write_lock(lib):  # a library from before routed scores were recorded: same files, no "routed"
        commit(lib, read_manifest(lib), {k: v for k, v in manifest.items()
                                         if k not in ("files", "version", "previous_version", "updated")}, {})
    assert all("routed" not in t["metrics"] for t in read_manifest(lib)["tasks"])
    train, test = new_task_files
    result = clora.open_library(lib).add_task("t2", train, test=test, progress=False)
    # measured with the new adapter off and the router over the earlier tasks: the run's own figure
    assert {row.task: row.routed_before for row in result.earlier} == pytest.approx(recorded)

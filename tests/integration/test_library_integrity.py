"""A library never loses data, never blesses a changed file, never reaches outside itself.

Each case here was found by attacking the commands: every one failed before the fix
(garbage collection deleted through a symlink, rollback re-hashed a tampered adapter,
export shipped one, import committed factors no command could load, a task name with a
trailing newline was accepted).
"""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, library_state
from safetensors.torch import load_file, save_file

from clora.cli.main import cli
from clora.library.layout import LibraryError, read_manifest
from clora.library.store import check_task_name


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def adapter_of(library, task):
    return next(t["adapter"] for t in read_manifest(library)["tasks"] if t["name"] == task)


def tamper(library, task="t0", rel=None):
    """Change one number of ``task``'s adapter file in place (the manifest keeps the old checksum)."""
    rel = rel or adapter_of(library, task)
    tensors = load_file(str(library / rel))
    key = next(iter(tensors))
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, str(library / rel))
    return rel


def test_clean_up_never_follows_a_symlinked_tasks_folder(library_copy, tmp_path):
    lib = library_copy()
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(lib / "tasks"), str(elsewhere))
    (elsewhere / "photos").mkdir()
    (elsewhere / "photos" / "cat.jpg").write_bytes(b"precious")
    (lib / "tasks").symlink_to(elsewhere, target_is_directory=True)
    result = run("library", "remove", lib, "t0")
    assert_one_line_error(result, "is a symbolic link; a library's folders must be inside it")
    assert (elsewhere / "photos" / "cat.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["photos", "t0", "t1"]


def test_clean_up_never_follows_a_symlinked_versions_folder(library_copy, tmp_path):
    lib = library_copy()
    elsewhere = tmp_path / "versions-elsewhere"
    shutil.move(str(lib / "versions"), str(elsewhere))
    (elsewhere / "v000099.json").write_text("someone else's file")
    (lib / "versions").symlink_to(elsewhere, target_is_directory=True)
    assert run("library", "remove", lib, "t0").exit_code != 0
    assert (elsewhere / "v000099.json").read_text() == "someone else's file"


def test_rollback_refuses_a_tampered_file_of_the_version_it_restores(library_copy):
    lib = library_copy()
    rel = adapter_of(lib, "t0")
    assert run("library", "remove", lib, "t0").exit_code == 0  # t0's files are kept for rollback
    tamper(lib, rel=rel)
    before = library_state(lib)
    result = run("library", "rollback", lib)
    assert_one_line_error(result, "checksum mismatch in tasks/t0/adapter.safetensors")
    assert library_state(lib) == before  # nothing committed, nothing cleaned up


def test_remove_does_not_carry_a_tampered_file_forward(library_copy):
    lib = library_copy()
    tamper(lib, "t0")
    before = library_state(lib)
    assert_one_line_error(run("library", "remove", lib, "t1"), "checksum mismatch in tasks/t0/adapter.safetensors")
    assert library_state(lib) == before


def test_export_refuses_a_tampered_adapter(library_copy, tmp_path):
    lib = library_copy()
    tamper(lib, "t0")
    result = run("library", "export", lib, "--task", "t1", tmp_path / "out")
    assert_one_line_error(result, "cannot export 't1': checksum mismatch in tasks/t0/adapter.safetensors")
    assert not (tmp_path / "out").exists()


def _peft_folder(tmp_path, library, change):
    """A PEFT folder made from the library's own export, then changed by ``change(tensors, config)``."""
    out = tmp_path / "peft"
    assert run("library", "export", library, "--task", "t0", out).exit_code == 0
    tensors = load_file(str(out / "adapter_model.safetensors"))
    config = json.loads((out / "adapter_config.json").read_text())
    change(tensors, config)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _wrong_d_out(tensors, config):
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])


def _ranks_disagree(tensors, config):
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key] = tensors[key][:, :1].contiguous()


def _not_finite(tensors, config):
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key] = torch.full_like(tensors[key], float("nan"))


def _rank_zero(tensors, config):
    config["r"] = 0


def _rank_text(tensors, config):
    config["r"] = "eight"


def _no_rank(tensors, config):
    del config["r"]


@pytest.mark.parametrize("change,fragment", [
    (_wrong_d_out, "do not fit"), (_ranks_disagree, "do not fit"), (_not_finite, "NaN or infinite"),
    (_rank_zero, "must be a positive integer"), (_rank_text, "must be a positive integer"),
    (_no_rank, "must be a positive integer")])
def test_import_refuses_what_could_not_be_loaded_afterwards(change, fragment, library_copy, tmp_path):
    lib = library_copy()
    folder = _peft_folder(tmp_path, lib, change)
    before = library_state(lib)
    result = run("library", "import", lib, folder, "--name", "x", "--labels", "a,b")
    assert_one_line_error(result, fragment)
    assert library_state(lib) == before
    assert run("predict", lib, "apple oven").exit_code == 0  # the library still answers


@pytest.mark.parametrize("body", [b"", b"not safetensors at all"])
def test_import_of_a_damaged_weights_file_is_one_line(body, library_copy, tmp_path):
    lib = library_copy()
    folder = _peft_folder(tmp_path, lib, lambda tensors, config: None)
    (folder / "adapter_model.safetensors").write_bytes(body)
    assert_one_line_error(run("library", "import", lib, folder, "--name", "x", "--labels", "a,b"), "cannot read")


@pytest.mark.parametrize("name", ["abc\n", "abc\n\n", "\nabc", "a/b", "../x", ""])
def test_task_names_must_match_whole(name):
    with pytest.raises(LibraryError, match="is not allowed"):
        check_task_name(name)


def test_verify_names_a_manifest_path_that_leaves_the_library(library_copy, tmp_path):
    lib = library_copy()
    manifest = read_manifest(lib)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(lib / manifest["tasks"][0]["adapter"], outside)
    for rel in (str(outside), "../outside.safetensors"):
        changed = dict(manifest, files={**manifest["files"], rel: manifest["files"][manifest["tasks"][0]["adapter"]]})
        (lib / "manifest.json").write_text(json.dumps(changed))
        assert_one_line_error(run("library", "verify", lib), "leaves the library")


def test_verify_finds_an_all_nan_adapter_whose_checksum_was_updated(library_copy):
    """A consistent lie: NaN factors with a matching checksum pass every file check but not verify."""
    from clora.library.layout import sha256_file

    lib = library_copy()
    rel = adapter_of(lib, "t1")
    save_file({k: v * float("nan") for k, v in load_file(str(lib / rel)).items()}, str(lib / rel))
    manifest = read_manifest(lib)
    manifest["files"][rel] = sha256_file(lib / rel)
    (lib / "manifest.json").write_text(json.dumps(manifest))
    result = run("library", "verify", lib)
    assert result.exit_code != 0 and "NaN or infinite" in result.output, result.output


REPLACER = """
import sys, pathlib
from clora.workflows.outdir import staged_out_dir
out = pathlib.Path(sys.argv[1])
n = 0
while True:
    n += 1
    with staged_out_dir(out) as stage:
        (stage / "payload.bin").write_bytes(bytes(200_000))
        (stage / "report.json").write_text('{"run": %d}' % n)   # the marker: a complete run
"""


def test_twenty_kills_during_output_replacement_never_leave_out_missing(tmp_path):
    import os
    import pathlib
    import random
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "OUT"
    script = tmp_path / "replacer.py"
    script.write_text(REPLACER)
    rng = random.Random(0)
    runs = set()
    for _ in range(20):
        root = str(pathlib.Path(__file__).resolve().parents[2])  # this checkout's clora, whatever is installed
        child = subprocess.Popen([sys.executable, str(script), str(out)],
                                 env={**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")})
        while not (out / "report.json").exists():  # the first replacement has happened
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert out.is_dir() and (out / "report.json").is_file(), "OUT went missing"
        assert (out / "payload.bin").stat().st_size == 200_000  # complete, not half-written
        runs.add((out / "report.json").read_text())
    assert len(runs) > 1  # the kills landed in a loop of real replacements
    from clora.workflows.outdir import remove_stale_stages

    remove_stale_stages(out)  # what the next run does first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT", "replacer.py"]


def test_temp_files_of_killed_writes_are_reported_and_cleaned_by_the_next_writer(library_copy):
    lib = library_copy()
    (lib / ".manifest.json.tmp-999999").write_text("{half")
    (lib / "versions" / ".v000002.json.tmp-999999").write_text("{half")
    result = run("library", "verify", lib)
    assert result.exit_code == 0 and "2 temporary file(s) of an interrupted write" in result.output
    assert run("library", "remove", lib, "t0").exit_code == 0
    assert not (lib / ".manifest.json.tmp-999999").exists()
    assert not (lib / "versions" / ".v000002.json.tmp-999999").exists()
    assert "temporary file" not in run("library", "verify", lib).output

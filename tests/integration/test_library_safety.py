"""Crash safety and concurrent writers, with real ``clora add-task`` processes.

The crash test kills add-task with SIGKILL at 20 random moments. The writer's fsyncs
and manifest writes are slowed down inside the child process (monkeypatched in a
wrapper, not in clora) so that a good share of the kills land inside the commit.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from click.testing import CliRunner
from conftest import library_state

from clora.cli.main import cli
from clora.library import sha256_file
from clora.library.layout import read_manifest

WRAPPER = """
import sys, time
import clora.library.store as store
delay = float(sys.argv[1])
def slow(fn):
    def wrapped(*args, **kwargs):
        time.sleep(delay)
        return fn(*args, **kwargs)
    return wrapped
store.fsync_file = slow(store.fsync_file)
store.write_json_atomic = slow(store.write_json_atomic)
store.os.replace = slow(store.os.replace)  # also the task folder's rename
from clora.cli.main import main
sys.argv = ["clora"] + sys.argv[2:]
main()
"""
VOLATILE = {"created", "updated"}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def version_state(lib):
    """The manifest (without timestamps) and the hash of every file it references."""
    manifest = read_manifest(lib)
    return json.dumps(_strip(manifest), sort_keys=True), {rel: sha256_file(lib / rel) for rel in manifest["files"]}


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _add_task_cmd(wrapper, lib, name, train, delay=0.25):
    return [sys.executable, str(wrapper), str(delay), "add-task", str(lib), "--name", name, "--train", str(train),
            "--quiet"]


def test_sigkill_at_20_random_moments_leaves_the_old_or_the_new_version(library_copy, new_task_files, tmp_path):
    original = library_copy()
    wrapper = tmp_path / "slow_clora.py"
    wrapper.write_text(WRAPPER)
    train = new_task_files[0]
    old = version_state(original)
    reference = tmp_path / "reference"
    shutil.copytree(original, reference)
    started = time.perf_counter()
    subprocess.run(_add_task_cmd(wrapper, reference, "t2", train), env=_env(), check=True, capture_output=True)
    duration = time.perf_counter() - started
    new = version_state(reference)
    assert new != old
    rng = random.Random(0)
    outcomes = []
    for i in range(20):
        lib = tmp_path / f"lib{i}"
        shutil.copytree(original, lib)
        # half the kills anywhere, half in the last 40% of the run, where the commit is
        moment = rng.uniform(0, duration) if i % 2 == 0 else rng.uniform(0.6 * duration, duration)
        proc = subprocess.Popen(_add_task_cmd(wrapper, lib, "t2", train), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        result = CliRunner().invoke(cli, ["library", "verify", str(lib)])
        assert result.exit_code == 0, f"kill {i} at {moment:.2f}s: {result.output}"
        state = version_state(lib)
        assert state in (old, new), f"kill {i} at {moment:.2f}s left a mixed library"
        leftovers = any(p.name.startswith(".stage-") for p in lib.iterdir()) or (lib / "tasks" / "t2").exists()
        outcomes.append("new" if state == new else "old, mid-write" if leftovers else "old")
    print("kill outcomes:", {k: outcomes.count(k) for k in sorted(set(outcomes))})
    assert any(o.startswith("old") for o in outcomes)  # the kills did interrupt runs
    # a library left by a kill takes the next add-task normally (stale staging is cleaned up)
    last = tmp_path / "lib19"
    if version_state(last) == old:
        subprocess.run(_add_task_cmd(wrapper, last, "t2", train, delay=0), env=_env(), check=True, capture_output=True)
        assert version_state(last) == new
    assert not any(p.name.startswith(".stage-") for p in last.iterdir())


def test_two_writers_at_once_never_lose_an_update(library_copy, new_task_files, tmp_path):
    lib = library_copy()
    wrapper = tmp_path / "slow_clora.py"
    wrapper.write_text(WRAPPER)
    procs = {name: subprocess.Popen(_add_task_cmd(wrapper, lib, name, new_task_files[0], delay=0.2), env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("first", "second")}
    results = {name: (p.wait(), p.stderr.read()) for name, p in procs.items()}
    names = [t["name"] for t in read_manifest(lib)["tasks"]]
    for name, (code, err) in results.items():
        if code == 0:
            assert name in names
        else:
            assert "is locked" in err and name not in names, err
    assert any(code == 0 for code, _ in results.values())
    assert CliRunner().invoke(cli, ["library", "verify", str(lib)]).exit_code == 0
    assert read_manifest(lib)["version"] == 1 + sum(code == 0 for code, _ in results.values())
    assert library_state(lib)  # the library is readable as a whole

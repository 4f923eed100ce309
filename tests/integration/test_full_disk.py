"""A full disk (issue 38, finding 4): every command gives its result or one line, the server keeps answering
JSON and says so on /health, and no inbox record is lost or torn.

The real thing runs in a private mount namespace on a small tmpfs (``full_disk_child.py``); where user
namespaces are not allowed, that test skips and the fault-injecting ones below still run.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clora.errors import StorageError, as_storage_error
from clora.inbox.records import RECORDS, Inbox, Record
from clora.library import readers

CHILD = Path(__file__).with_name("full_disk_child.py")


def _namespaces_allowed() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def _one_line(command: dict) -> bool:
    lines = [line for line in command["output"].splitlines() if line.strip() and not line.startswith("warning:")]
    return command["exception"] is None and len(lines) == 1 and lines[0].startswith("Error: ")


@pytest.mark.skipif(not _namespaces_allowed(), reason="unprivileged mount namespaces (unshare -Urm) not allowed here")
def test_every_command_on_a_full_tmpfs(library_copy, tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(CHILD),
                           str(library_copy()), str(tmp_path / "work"), str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for command in report["readers"]:  # reads need no write: a reader pin is skipped when it cannot be placed
        assert command["exit_code"] == 0 and command["exception"] is None, command
    for command in report["writers"]:
        assert command["exit_code"] != 0 and _one_line(command), command
    disk_lines = [c for c in report["writers"] if "disk refused" in c["output"]]
    assert len(disk_lines) >= 5, report["writers"]  # export, remove, import, cluster, run hit the full disk
    assert report["library_changed"] == [] and report["left_behind"] == []
    server = report["server"]
    assert "crashed" not in server, server.get("crashed")
    for status, body in server["predict"]:  # answers go on; the records that cannot be kept are reported
        assert status == 200 and len(json.loads(body)["predictions"]) == 2
    status, body = server["feedback"]
    assert status == 503 and "could not be written" in json.loads(body)["error"]
    health = json.loads(server["health"][1])
    assert health["status"] == "degraded" and set(health["problems"]) == {"inbox", "storage"}
    torn = report["torn"]
    assert "crashed" not in torn, torn.get("crashed")
    assert torn["error"].startswith("StorageError") and torn["after"] == torn["before"] + [torn["late"]]
    assert torn["skipped"] == 0


def test_an_append_the_disk_refuses_part_way_leaves_no_torn_record(tmp_path, monkeypatch):
    inbox = Inbox(tmp_path / "lib")
    first = Record(input="kept before the disk filled")
    inbox.append([first])
    real_write = os.write

    def half_then_full(fd, data):  # the disk takes 10 bytes, then is full
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError, match="nothing of this write was kept"):
        inbox.append([Record(input="x" * 500)])
    monkeypatch.setattr(os, "write", real_write)
    late = Record(input="written once there was room")
    inbox.append([late])
    assert [r.id for r in inbox.records()] == [first.id, late.id] and inbox.skipped == 0


def test_a_line_torn_by_a_killed_writer_is_skipped_and_counted_not_glued_to_the_next(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    first = Record(input="whole")
    inbox.append([first])
    with open(inbox.folder / RECORDS, "ab") as fh:
        fh.write(b'{"input": "cut off by SIGK')  # no newline: the writer died here
    late = Record(input="the next record")
    inbox.append([late])
    assert [r.id for r in inbox.records()] == [first.id, late.id] and inbox.skipped == 1


def test_a_reader_reads_without_a_pin_when_the_pin_cannot_be_written(library_copy, monkeypatch):
    lib = library_copy()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(readers.os, "write", full)
    with readers.reading(lib) as manifest:
        assert manifest.version >= 1
    assert not [p for p in (lib / readers.READERS).iterdir()]  # no half-made pin left behind


def test_storage_errors_read_as_one_line():
    error = as_storage_error(OSError(errno.ENOSPC, "No space left on device", "/lib/x"))
    assert isinstance(error, StorageError) and "No space left on device (/lib/x)" in str(error)
    assert error.status == 503 and "\n" not in str(error)
    assert as_storage_error(ValueError("a bug")) is None
    assert as_storage_error(BrokenPipeError(errno.EPIPE, "Broken pipe")) is None  # a closed pipe is not the disk


def test_output_piped_into_a_reader_that_stops_early_is_no_disk_error(library_copy):
    """``clora library show LIB | head`` said "the disk refused a file operation: Broken pipe". ``true`` exits before
    clora has started, so every write of clora's finds the pipe closed."""
    done = subprocess.run(["bash", "-c", f"clora library show {library_copy()} | true"], capture_output=True,
                          text=True, timeout=120)
    assert done.stderr == "", done.stderr

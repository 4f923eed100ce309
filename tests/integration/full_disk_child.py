"""Run inside a private mount namespace (``unshare -Urm``) by ``test_full_disk.py``: every command on a full disk.

Usage: ``python full_disk_child.py LIBRARY WORKDIR OUT.json``. A tmpfs is mounted at WORKDIR/disk, the
library (and an inbox of a few records) is copied onto it, the rest of the disk is filled, and each clora
command is run as a user would. What each did (exit code, output, library unchanged?) is written to OUT.json,
outside the tmpfs, for the test to judge.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".readers" not in p.parts and p.name != ".lock"}


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until a write fails (then free ``leave`` bytes again, if asked)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                continue
    if leave:
        os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def cli(args: list[str]) -> dict:
    from click.testing import CliRunner

    from clora.cli.main import cli as main

    result = CliRunner().invoke(main, args)
    return {"args": args, "exit_code": result.exit_code, "output": result.output,
            "exception": None if result.exception is None or isinstance(result.exception, SystemExit)
            else repr(result.exception)}


def call(port: int, path: str, body=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def serve_on_full_disk(lib: Path, inbox_folder: Path) -> dict:
    """A server whose inbox and library sit on the full disk: what /predict, /feedback and /health answer."""
    from clora.inbox.hooks import server_hooks
    from clora.inbox.records import Inbox
    from clora.serving.app import ServeSettings
    from clora.serving.inference import load_library
    from clora.serving.server import listen, make_server

    inbox = Inbox(lib, folder=inbox_folder)
    settings = ServeSettings(**server_hooks(inbox, record_unrouted=True))
    loaded = load_library(lib, device="cpu")
    sock = listen("127.0.0.1", 0)
    server = make_server(loaded, "127.0.0.1", 0, settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    while not server.started:
        time.sleep(0.02)
    try:
        # inputs longer than a page: tmpfs keeps the rest of a file's last page free for small appends
        long = "zzqx unheard words " * 400
        out = {"predict": [call(port, "/predict", {"inputs": [f"{long} {i}", "apple oven"]}) for i in range(5)]}
        out["feedback"] = call(port, "/feedback", {"input": long, "label": "yes"})
        out["health"] = call(port, "/health")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return out


def torn_append(disk: Path, inbox_folder: Path) -> dict:
    """An append that does not fit must leave no part of itself; the next one, once there is room, reads back."""
    from clora.inbox.records import Inbox, Record

    inbox = Inbox(disk / "lib", folder=inbox_folder)
    before = [r.id for r in inbox.records()]
    filler = fill(disk, leave=100)
    error = None
    try:
        inbox.append([Record(input="x" * 3000 + str(i)) for i in range(4)])
    except Exception as exc:  # noqa: BLE001 - the test judges what it was
        error = f"{type(exc).__name__}: {exc}"
    filler.unlink()
    late = Record(input="after the disk had room again")
    inbox.append([late])
    after = inbox.records()
    return {"error": error, "before": before, "after": [r.id for r in after], "late": late.id,
            "skipped": getattr(inbox, "skipped", None)}


def guarded(step, *args) -> dict:
    """``step(*args)``, or what it raised (the test fails naming it, and the other steps still run)."""
    try:
        return step(*args)
    except Exception:  # noqa: BLE001
        import traceback

        return {"crashed": traceback.format_exc()}


def main() -> None:
    library, work, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    disk = work / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    lib, inbox_folder = disk / "lib", disk / "lib.inbox"
    shutil.copytree(library, lib, ignore=shutil.ignore_patterns(".lock", ".readers"))
    from clora.inbox.records import Inbox, Record

    Inbox(lib, folder=inbox_folder).append([Record(input=f"an early record {i}") for i in range(3)])
    before = state(lib)
    filler = fill(disk)
    report: dict = {"readers": [], "writers": []}
    for args in (["library", "verify", str(lib)], ["library", "show", str(lib)], ["library", "list", str(lib)],
                 ["predict", str(lib), "apple oven"]):
        report["readers"].append(cli(args))
    exported = work / "export"  # outside the full disk: export must still be able to read
    report["readers"].append(cli(["library", "export", str(lib), str(exported), "--task", "t0"]))
    for args in (["library", "export", str(lib), str(disk / "export"), "--task", "t0"],
                 ["library", "rollback", str(lib)], ["library", "remove", str(lib), "t0"],
                 ["library", "import", str(lib), str(exported), "--name", "again", "--labels", "a,b"],
                 ["inbox", "--inbox", str(inbox_folder), str(lib), "label", "nosuchid", "x"],
                 ["inbox", "--inbox", str(inbox_folder), str(lib), "cluster"],
                 ["run", "demo", "--model", json.loads((lib / "manifest.json").read_text())["base_model"],
                  "--out", str(disk / "run"), "--max-train", "8", "--max-test", "4", "--epochs", "1", "--quiet"]):
        report["writers"].append(cli(args))
    report["left_behind"] = sorted(str(p.relative_to(disk)) for name in ("export", "run")
                                   for p in (disk / name).rglob("*") if p.is_file()) if disk.exists() else []
    after = state(lib)
    report["library_changed"] = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    report["server"] = guarded(serve_on_full_disk, lib, inbox_folder)
    filler.unlink()
    report["torn"] = guarded(torn_append, disk, inbox_folder)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Writing library versions safely: one writer at a time, atomic commits, rollback.

A commit moves fully written, fsynced task folders into place, writes the new manifest
to ``versions/`` and then atomically replaces ``manifest.json``. A crash at any moment
leaves ``manifest.json`` pointing at either the old or the new version; files that a
crash leaves unreferenced are removed by the next commit. The previous version's
manifest and files are kept so that it can be rolled back to.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from clora.library.layout import (LOCK, MANIFEST, VERSIONS, LibraryError, fsync_dir, fsync_file, parse_manifest,
                                  json_text, read_manifest, sha256_file, version_path, write_json_atomic)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
STAGE_PREFIX = ".stage-"


def check_task_name(name: str) -> None:
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise LibraryError(f"task name {name!r} is not allowed (letters, digits, '.', '_', '-'; "
                           "starting with a letter or digit)")


@contextmanager
def write_lock(folder: Path):
    """Hold the library's exclusive writer lock; fail at once if another writer holds it."""
    path = Path(folder) / LOCK
    fh = open(path, "a+")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise LibraryError(f"library {str(folder)!r} is locked: another clora process is writing "
                                       "to it; try again when it has finished") from None
                raise
        yield
    finally:
        fh.close()  # closing releases the flock; a killed process releases it too


def new_stage(folder: Path) -> Path:
    """A fresh staging folder inside the library (same file system, so renames are atomic)."""
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=folder))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes it private; a library folder is as shared as any other
    return stage


def previous_manifest(folder: Path, manifest: dict) -> dict | None:
    prev = manifest.get("previous_version")
    if prev is None:
        return None
    path = version_path(folder, prev)
    if not path.is_file():
        return None
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def kept_files(folder: Path, manifest: dict) -> set[str]:
    """Files the current and the previous version reference (a new task folder must avoid them)."""
    previous = previous_manifest(folder, manifest)
    return set(manifest["files"]) | (set(previous["files"]) if previous else set())


def free_task_dir(folder: Path, name: str, keep: set[str]) -> str:
    """``tasks/<name>``, or a suffixed variant when a kept version still references that folder."""
    rel = f"tasks/{name}"
    n = 1
    while any(f.startswith(rel + "/") for f in keep):
        n += 1
        rel = f"tasks/{name}~{n}"
    return rel


def _install(folder: Path, stage: Path, rel_dir: str) -> None:
    target = folder / rel_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # an unreferenced leftover of an interrupted write
        shutil.rmtree(target)
    for path in stage.rglob("*"):
        if path.is_file():
            fsync_file(path)
    os.replace(stage, target)
    fsync_dir(target.parent)


def commit(folder: Path, current: dict | None, new: dict, staged: dict[str, Path]) -> dict:
    """Make ``new`` the library's current version.

    ``staged`` maps a task folder (``tasks/<name>``) to a written staging folder that
    becomes it. ``new['files']`` is filled from the files the tasks reference. The
    caller holds :func:`write_lock`. Returns the committed manifest.
    """
    folder = Path(folder)
    (folder / VERSIONS).mkdir(parents=True, exist_ok=True)
    for rel_dir, stage in staged.items():
        _install(folder, stage, rel_dir)
    known = dict(current["files"]) if current else {}
    new["files"] = {rel: known.get(rel) or sha256_file(folder / rel) for rel in sorted(files_of(new))}
    new["version"] = current["version"] + 1 if current else 1
    new["previous_version"] = current["version"] if current else None
    new["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json_text(new)  # encoded once, written twice
    write_json_atomic(version_path(folder, new["version"]), new, text)
    write_json_atomic(folder / MANIFEST, new, text)
    collect_garbage(folder, new, current)
    return new


def files_of(manifest: dict) -> set[str]:
    """Every file the tasks and reserved subspaces of ``manifest`` point to."""
    files = set()
    for entry in manifest["tasks"] + manifest.get("reserved", []):
        for key in ("adapter", "subspace", "router"):
            if entry.get(key):
                files.add(entry[key])
    return files


def collect_garbage(folder: Path, current: dict, previous: dict | None) -> None:
    """Remove what neither the current nor the previous version references."""
    keep = set(current["files"]) | (set(previous["files"]) if previous else set())
    versions = {version_path(folder, current["version"]).name}
    if previous:
        versions.add(version_path(folder, previous["version"]).name)
    for path in (folder / VERSIONS).glob("v*.json"):
        if path.name not in versions:
            path.unlink()
    tasks = folder / "tasks"
    if tasks.is_dir():
        for task_dir in tasks.iterdir():
            rel = f"tasks/{task_dir.name}"
            if not any(f.startswith(rel + "/") for f in keep):
                shutil.rmtree(task_dir, ignore_errors=True)
    for stale in folder.glob(STAGE_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def rollback(folder: Path) -> dict:
    """Make the previous version current again (as a new version, so rollback can be undone)."""
    folder = Path(folder)
    with write_lock(folder):
        current = read_manifest(folder)
        previous = previous_manifest(folder, current)
        if previous is None:
            raise LibraryError(f"library {str(folder)!r} has no previous version to roll back to")
        restored = {k: v for k, v in previous.items() if k not in ("version", "previous_version", "updated")}
        restored["rolled_back_from"] = current["version"]
        return commit(folder, current, restored, {})

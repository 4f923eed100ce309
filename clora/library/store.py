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

import torch

from clora.library.manifest import Manifest, on_disk
from clora.library.readers import pinned_versions
from clora.library.schema import manifest_type_problem
from clora.library.layout import (LOCK, MANIFEST, VERSIONS, LibraryError, fsync_dir, fsync_file, json_text,
                                  parse_manifest, path_problem, read_manifest, sha256_file, version_path,
                                  write_json_atomic)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
STAGE_PREFIX = ".stage-"


def check_task_name(name: str) -> None:
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):  # fullmatch: no trailing newline slips in
        raise LibraryError(f"task name {name!r} is not allowed (letters, digits, '.', '_', '-'; "
                           "starting with a letter or digit)")


@contextmanager
def write_lock(folder: Path):
    """Hold the library's exclusive writer lock; fail at once if another writer holds it."""
    if not Path(folder).is_dir():  # named as such, rather than as a failure to open the lock file
        raise LibraryError(f"library {str(folder)!r} " + ("is not a folder" if Path(folder).exists() else "not found"))
    path = Path(folder) / LOCK
    try:
        fh = open(path, "a+")
    except OSError as exc:
        hint = " (is the library read-only for you?)" if isinstance(exc, PermissionError) else ""
        raise LibraryError(f"cannot take the writer lock {str(path)!r}: {exc.strerror}{hint}; "
                           "nothing was changed") from None
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


def previous_manifest(folder: Path, manifest: Manifest | dict) -> dict | None:
    manifest = on_disk(manifest)
    prev = manifest.get("previous_version")
    if prev is None:
        return None
    path = version_path(folder, prev)
    if not path.is_file():
        return None
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def _version_manifest(folder: Path, version) -> dict | None:
    path = version_path(folder, version) if isinstance(version, int) else None
    if path is None or not path.is_file():
        return None
    try:
        return parse_manifest(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, LibraryError):
        return None


def kept_versions(folder: Path, current: dict) -> list[dict]:
    """The manifests whose files must stay: the current one, the one it rolls back to, and every version
    a live reader pins (with the version that one rolls back to, which ``verify`` reads)."""
    kept = {current["version"]: current}
    wanted = [current.get("previous_version")]
    for version in sorted(pinned_versions(folder)):
        wanted.append(version)
        pinned = _version_manifest(folder, version)
        if pinned is not None:
            wanted.append(pinned.get("previous_version"))
    for version in wanted:
        if version is not None and version not in kept:
            found = _version_manifest(folder, version)
            if found is not None:
                kept[version] = found
    return list(kept.values())


def kept_files(folder: Path, manifest: Manifest | dict) -> set[str]:
    """Files that kept versions reference (a new task folder must avoid them)."""
    manifest = on_disk(manifest)
    return set().union(*(set(m["files"]) for m in kept_versions(folder, manifest)))


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


def check_layout(folder: Path) -> None:
    """Refuse a library whose ``tasks/`` or ``versions/`` is a symbolic link: a write or a clean-up
    there would reach outside the library."""
    for sub in ("tasks", VERSIONS):
        if (Path(folder) / sub).is_symlink():
            raise LibraryError(f"{str(Path(folder) / sub)!r} is a symbolic link; a library's folders must be "
                               "inside it (nothing was changed)")


def _checked_files(folder: Path, new: dict, known: dict[str, str], fresh: set[str]) -> dict[str, str]:
    """Checksums of ``new``'s files: computed for the ``fresh`` (just staged) ones; for every other file
    taken from a manifest (``known``) and checked against the disk, so a changed file is never blessed."""
    files, bad = {}, []
    for rel in sorted(files_of(new)):
        outside = path_problem(folder, rel)
        if outside:
            bad.append(outside)
        elif rel in fresh:
            continue  # written by this commit: hashed once it is in place
        elif rel not in known:
            bad.append(f"{rel} is listed by no version's manifest")
        elif not (folder / rel).is_file():
            bad.append(f"missing file {rel}")
        elif sha256_file(folder / rel) != known[rel]:
            bad.append(f"checksum mismatch in {rel} (the file was changed after it was written)")
        else:
            files[rel] = known[rel]
    if bad:
        raise LibraryError(f"library {str(folder)!r}: {bad[0]}; nothing was committed")
    return files


def commit(folder: Path, current: Manifest | dict | None, new: dict, staged: dict[str, Path],
           known: dict[str, str] | None = None) -> Manifest:
    """Make ``new`` the library's current version.

    ``staged`` maps a task folder (``tasks/<name>``) to a written staging folder that
    becomes it. ``new['files']`` is filled from the files the tasks reference: checksums
    of staged files are computed, every other file's comes from ``current`` (or ``known``,
    e.g. the version a rollback restores) and must match the disk. The caller holds
    :func:`write_lock`. Returns the committed manifest.
    """
    folder = Path(folder)
    current = on_disk(current) if current is not None else None
    check_layout(folder)
    (folder / VERSIONS).mkdir(parents=True, exist_ok=True)
    fresh = {rel for rel in files_of(new) if any(rel.startswith(d + "/") for d in staged)}
    new["version"] = current["version"] + 1 if current else 1
    new["previous_version"] = current["version"] if current else None
    new["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    check_readable({**new, "files": {}}, staged)
    files = _checked_files(folder, new, {**(known or {}), **(current["files"] if current else {})}, fresh)
    installed = []
    try:
        for rel_dir, stage in staged.items():
            _install(folder, stage, rel_dir)
            installed.append(rel_dir)
        new["files"] = {**files, **{rel: sha256_file(folder / rel) for rel in sorted(fresh)}}
        text = json_text(new)  # encoded once, written twice
        write_json_atomic(version_path(folder, new["version"]), new, text)
        write_json_atomic(folder / MANIFEST, new, text)
    except OSError:  # a full disk before the manifest moved: the library stays exactly at its version
        _undo(folder, current, new, installed)
        raise
    collect_garbage(folder, new)
    return Manifest.of(new)


def _undo(folder: Path, current: dict | None, new: dict, installed: list[str]) -> None:
    """Remove what a commit that failed before its manifest was replaced had put in place."""
    try:
        on_disk = read_manifest(folder)["version"]
    except LibraryError:  # no manifest yet: the first commit
        on_disk = None
    if on_disk != (current or {}).get("version"):
        return  # the manifest was replaced: the commit happened, only its last sync failed
    if new.get("version") is not None:
        version_path(folder, new["version"]).unlink(missing_ok=True)
    for rel_dir in installed:
        shutil.rmtree(folder / rel_dir, ignore_errors=True)


def check_readable(new: dict, staged: dict[str, Path]) -> None:
    """Refuse to commit what every reader would refuse: the readers' own manifest checks (types, values,
    task names) and, in the staged tensor files, NaN or infinite values. One validation for both sides."""
    problem = manifest_type_problem(new)
    for task in new.get("tasks", []):
        if problem is None and (not isinstance(task, dict) or not isinstance(task.get("name"), str)
                                or not TASK_NAME.fullmatch(task["name"])):
            problem = f"task name {task.get('name') if isinstance(task, dict) else task!r} is not allowed"
    for stage in staged.values():
        for path in sorted(Path(stage).rglob("*.safetensors")):
            if problem is None:
                problem = _nonfinite(path)
    if problem is not None:
        raise LibraryError(f"nothing was committed: readers would refuse the new version ({problem})")


def _nonfinite(path: Path) -> str | None:
    from safetensors.torch import load_file

    for name, tensor in load_file(str(path)).items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"{path.name}: {name} holds NaN or infinite values"
    return None


def files_of(manifest: Manifest | dict) -> set[str]:
    """Every file the tasks and reserved subspaces of ``manifest`` point to."""
    manifest = on_disk(manifest)
    files = set()
    for entry in manifest["tasks"] + manifest.get("reserved", []):
        for key in ("adapter", "private", "subspace", "router"):
            if entry.get(key):
                files.add(entry[key])
    return files


def collect_garbage(folder: Path, current: dict) -> None:
    """Remove what no kept version (current, previous, pinned by a reader) references."""
    kept = kept_versions(folder, current)
    keep = set().union(*(set(m["files"]) for m in kept))
    versions = {version_path(folder, m["version"]).name for m in kept}
    for path in (folder / VERSIONS).glob("v*.json"):
        if path.name not in versions and not (folder / VERSIONS).is_symlink():
            path.unlink()
    tasks = folder / "tasks"
    if tasks.is_dir() and not tasks.is_symlink():  # never clean up through a link: it may lead anywhere
        for task_dir in tasks.iterdir():
            rel = f"tasks/{task_dir.name}"
            if any(f.startswith(rel + "/") for f in keep):
                continue
            if task_dir.is_symlink() or not task_dir.is_dir():
                task_dir.unlink()  # the link itself, never what it points to
            else:
                shutil.rmtree(task_dir, ignore_errors=True)  # rmtree removes inner links, not their targets
    for stale in folder.glob(STAGE_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    # temporary files of killed writes (the writer lock says no write is under way now)
    for stale in stale_temp_files(folder):
        stale.unlink(missing_ok=True)


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary manifest files a killed writer left (``.manifest.json.tmp-PID``, ``versions/.vN.json.tmp-PID``)."""
    folder = Path(folder)
    return sorted(folder.glob(f".{MANIFEST}.tmp-*")) + sorted((folder / VERSIONS).glob(".v*.json.tmp-*"))


def rollback(folder: Path) -> Manifest:
    """Make the previous version current again (as a new version, so rollback can be undone)."""
    folder = Path(folder)
    with write_lock(folder):
        current = read_manifest(folder)
        previous = previous_manifest(folder, current)
        if previous is None:
            raise LibraryError(f"library {str(folder)!r} has no previous version to roll back to")
        restored = {k: v for k, v in previous.items() if k not in ("version", "previous_version", "updated")}
        restored["rolled_back_from"] = current["version"]
        # each restored file is checked against the checksum the previous version recorded, not re-hashed
        return commit(folder, current, restored, {}, known=previous["files"])

"""The on-disk library format: paths, checksums, manifest reading and validation.

Layout (``docs/library-format.md``)::

    LIBRARY/manifest.json                      the current version (replaced atomically)
    LIBRARY/versions/v000007.json              the current and the previous manifest
    LIBRARY/tasks/<name>/adapter.safetensors   ``<module>.lora_A`` (r, d_in), ``<module>.lora_B`` (d_out, r)
    LIBRARY/tasks/<name>/subspace.safetensors  ``<module>`` (d_in, k): directions the task reserved
    LIBRARY/.lock                              writers hold an exclusive flock on it

Files under ``tasks/`` are written once and never modified; a new version only adds
files and a new manifest, so a reader that holds a manifest sees a consistent library.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from clora.errors import CloraError
from clora.library.manifest import Manifest, on_disk
from clora.library.schema import manifest_type_problem

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VERSIONS = "versions"
LOCK = ".lock"
REQUIRED_KEYS = ("format_version", "version", "base_model", "base_fingerprint", "family", "target_modules",
                 "method", "settings", "tasks", "files")


class LibraryError(CloraError):
    """A library is missing, malformed, tampered with, locked or incompatible."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_path(folder: Path, version: int) -> Path:
    return folder / VERSIONS / f"v{version:06d}.json"


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_text(data: dict) -> str:
    """``data`` as JSON with one top-level key per line and one line per item of a list.

    Readable (a manifest's tasks one per line), and fast: every value goes through the C
    encoder, which ``json.dumps(indent=...)`` never uses. At 100 tasks an indented manifest
    took most of a commit's time.
    """
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n".join("    " + json.dumps(item) for item in value)
            lines.append(f"  {json.dumps(key)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_json_atomic(path: Path, data: dict, text: str | None = None) -> None:
    """Write ``data`` (or its ready ``text``) to ``path`` via a fsynced temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text if text is not None else json_text(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk (or an interrupt): leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def parse_manifest(text: str, where: str) -> dict:
    """A validated manifest dict from its JSON text (LibraryError naming the problem)."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LibraryError(f"{where} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(manifest, dict):
        raise LibraryError(f"{where} is not a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise LibraryError(f"{where} has no integer format_version")
    if version > FORMAT_VERSION:
        raise LibraryError(f"{where} has format version {version}, newer than this clora supports "
                           f"({FORMAT_VERSION}); upgrade clora")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise LibraryError(f"{where} lacks {', '.join(missing)}")
    if not isinstance(manifest["tasks"], list) or not isinstance(manifest["files"], dict):
        raise LibraryError(f"{where}: 'tasks' must be a list and 'files' an object")
    for i, task in enumerate(manifest["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise LibraryError(f"{where}: task {i + 1} has no name")
    problem = manifest_type_problem(manifest)
    if problem:
        raise LibraryError(f"{where}: {problem}")
    return manifest


def read_manifest(folder: Path) -> dict:
    """The current manifest of the library at ``folder``."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        raise LibraryError(f"library {str(folder)!r} not found")
    if not path.is_file():
        inner = folder / "library"
        if (inner / MANIFEST).is_file():  # a run folder: its library is inside it
            raise LibraryError(f"{str(folder)!r} is a run folder, not a library; its library is {str(inner)!r}")
        raise LibraryError(f"{str(folder)!r} is not a clora library (no {MANIFEST})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryError(f"cannot read {str(path)!r}: {exc}") from None
    return parse_manifest(text, str(path))


def load_manifest(folder: Path) -> Manifest:
    """The current version of the library at ``folder``, typed (LibraryError naming what is wrong)."""
    return Manifest.of(read_manifest(folder))


def referenced_files(manifest: Manifest | dict) -> set[str]:
    """Relative paths of every file a manifest points to."""
    manifest = on_disk(manifest)
    return set(manifest["files"])


def path_problem(folder: Path, rel) -> str | None:
    """Why ``rel`` may not be read as a file of the library at ``folder`` (None: it may).

    Paths stay inside the library: no absolute path, no ``..``, and nothing that a
    symbolic link leads out of it.
    """
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return f"path {rel!r} leaves the library"
    root = Path(folder).resolve()
    resolved = (root / rel).resolve()
    if resolved != root and root not in resolved.parents:
        return f"path {rel!r} leads out of the library (through a symbolic link)"
    return None


def check_files(folder: Path, manifest: Manifest | dict) -> list[str]:
    """Problems with the files ``manifest`` references: outside the library, missing or checksum mismatch."""
    manifest = on_disk(manifest)
    problems = []
    for rel, expected in sorted(manifest["files"].items()):
        path = Path(folder) / rel
        outside = path_problem(folder, rel)
        if outside:
            problems.append(outside)
        elif not path.is_file():
            problems.append(f"missing file {rel}")
        elif sha256_file(path) != expected:
            problems.append(f"checksum mismatch in {rel} (the file was changed after it was written)")
    return problems


def task_by_name(manifest: Manifest | dict, name: str) -> dict:
    manifest = on_disk(manifest)
    for task in manifest["tasks"]:
        if task["name"] == name:
            return task
    known = ", ".join(t["name"] for t in manifest["tasks"]) or "none"
    raise LibraryError(f"no task {name!r} in the library (tasks: {known})")

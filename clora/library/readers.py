"""Reader pins: a reader that opened version N can read all of N's files while writers commit.

A reader announces the version it reads with a *pin*: a small file in ``LIBRARY/.readers/``
that holds the version number and that the reader keeps under a shared ``flock`` for as
long as it reads. A writer's clean-up keeps every file of a pinned version (and of the
version it can roll back to) and deletes them only at a later commit, once no live
process pins them. A pin whose process has died is not locked any more and is removed.

Why the reader re-reads the manifest after pinning: between reading ``manifest.json``
and placing the pin, writers may have committed twice and cleaned up version N. If the
manifest still says N once the pin is in place, no commit after N has started its
clean-up before the pin existed (a commit writes its manifest before cleaning up), so
N's files are all there and stay there. If it says something newer, the reader pins that
one instead and checks again.
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from clora.library.layout import LibraryError, read_manifest
from clora.library.manifest import Manifest

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no pins; readers rely on the previous version being kept
    fcntl = None

READERS = ".readers"
PIN_SUFFIX = ".pin"
_ATTEMPTS = 20
_HALF_MADE_AGE_S = 60  # a pin still under its temporary name may be between open() and flock()


def _pin_folder(folder: Path) -> Path | None:
    """``LIBRARY/.readers`` (made if needed), or None where pins cannot be kept (read-only, a link, no flock)."""
    readers = Path(folder) / READERS
    if fcntl is None or readers.is_symlink():
        return None
    try:
        readers.mkdir(exist_ok=True)
    except OSError:  # a read-only library: no writer of ours can clean up under this reader either
        return None
    return readers


def _place_pin(readers: Path, version: int):
    """A locked pin file for ``version``: written and locked under a temporary name, then renamed, so a
    clean-up never sees an unlocked pin of a live reader. Returns (file descriptor, path), or None where the
    pin cannot be written (read-only or full disk): the reader then reads without one, as on a read-only
    library. The file is written unbuffered, so that closing it cannot fail with a late write."""
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    tmp, path = readers / f".tmp-{token}", readers / f"{token}{PIN_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.write(fd, str(version).encode("ascii"))
        os.replace(tmp, path)
    except OSError:  # a full disk: a pin is a write, and reading must not need one
        os.close(fd)
        tmp.unlink(missing_ok=True)
        return None
    return fd, path


def _release(pin) -> None:
    if pin is not None:
        fd, path = pin
        path.unlink(missing_ok=True)
        os.close(fd)


def _pin_current(folder: Path, readers: Path, manifest: dict):
    """``(pin or None, manifest)``: a pin on the version that is still current once the pin is in place."""
    for _ in range(_ATTEMPTS):
        pin = _place_pin(readers, manifest["version"])
        if pin is None:  # cannot write a pin: read without one
            return None, manifest
        again = read_manifest(folder)
        if again["version"] == manifest["version"]:
            return pin, manifest
        _release(pin)  # a writer committed meanwhile: pin the newer version instead
        manifest = again
    raise LibraryError(f"library {str(folder)!r} changed {_ATTEMPTS} times while it was being opened; try again")


@contextmanager
def reading(folder: Path):
    """Yield the current manifest of the library at ``folder`` (typed: :class:`Manifest`), pinned until
    the block ends.

    Every file the manifest references (and those of the version it rolls back to) stays
    on disk while the block runs, whatever writers commit meanwhile.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    readers = _pin_folder(folder)
    pin = None
    if readers is not None:
        pin, manifest = _pin_current(folder, readers, manifest)
    try:
        yield Manifest.of(manifest)
    finally:
        _release(pin)


def pinned_versions(folder: Path) -> set[int]:
    """Versions that live readers pin. Pins (and half-made pins) of dead processes are removed."""
    readers = Path(folder) / READERS
    if fcntl is None or readers.is_symlink() or not readers.is_dir():
        return set()
    versions = set()
    for path in readers.iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with open(path, "r+", encoding="ascii") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # a live reader holds it
                    text = fh.read().strip()
                    if path.name.endswith(PIN_SUFFIX) and text.isdigit():
                        versions.add(int(text))
                    continue
                if path.name.endswith(PIN_SUFFIX) or time.time() - path.stat().st_mtime > _HALF_MADE_AGE_S:
                    path.unlink(missing_ok=True)  # nobody holds it: its reader has finished or died
        except FileNotFoundError:
            continue  # its reader removed it just now
    return versions

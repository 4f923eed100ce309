"""Output folders that are either the old run or the new one, never half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from clora.config import check_output_path
from clora.errors import ConfigError

RUN_MARKER = "report.json"


def check_out_dir(out: Path, marker: str = RUN_MARKER) -> None:
    """Refuse an existing folder that is neither empty nor an earlier clora output (``marker``)."""
    check_output_path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise ConfigError(f"output folder {str(out)!r} is not empty and holds no clora run; choose another output "
                          "folder", field="out")


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system
    cannot, and nothing was changed."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stages(out: Path) -> list[str]:
    """Remove staging folders beside ``out`` left by killed runs (their process is gone); returns their names."""
    removed = []
    for path in out.parent.glob(f".{out.name}.tmp-*"):
        pid = path.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


@contextmanager
def staged_out_dir(out: Path):
    """Yield a fresh staging folder beside ``out``; on success it replaces ``out``.

    On an exception the staging folder is removed and ``out`` is left as it was. The
    replacement is one atomic exchange of the two folders where the system has it
    (Linux): at no moment is there no ``out``. Elsewhere it is two renames. Staging
    folders of killed runs are removed by the next run into the same ``out``.
    """
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists() and exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the old run
        return
    old = None
    if out.exists():  # no atomic exchange here: a kill between the two renames leaves the old run in `old`
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

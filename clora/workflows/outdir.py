"""Output folders that are either the old run or the new one, never half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from clora.errors import ConfigError

RUN_MARKER = "report.json"


def check_out_dir(out: Path, marker: str = RUN_MARKER) -> None:
    """Refuse an existing folder that is neither empty nor an earlier clora output (``marker``)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise ConfigError(f"output folder {str(out)!r} is not empty and holds no clora run; choose another output "
                          "folder", field="out")


@contextmanager
def staged_out_dir(out: Path):
    """Yield a fresh staging folder beside ``out``; on success it replaces ``out``.

    On an exception the staging folder is removed and ``out`` is left as it was.
    """
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""Reading a JSON data file with one-line errors (shared by the format readers)."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

from clora.errors import DataError


def read_json(path: Path):
    """The parsed JSON of ``path``; a missing, unreadable or malformed file is one :class:`DataError` line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"file {str(path)!r} not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"file {str(path)!r} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None


#: delimiters a CSV file may use; the first line decides which (``csv_delimiter``)
CSV_DELIMITERS = ",;\t|"


def csv_delimiter(path: Path) -> str:
    """The delimiter of a CSV file, sniffed from its first lines (``,`` when they do not tell).

    Spreadsheets in many locales write ``;``; a file read with the wrong delimiter shows one field
    whose name holds every column's, and the error would name fields that seem to be there.
    """
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            sample = fh.read(8192)
        return csv.Sniffer().sniff(sample.split("\n", 1)[0] + "\n", delimiters=CSV_DELIMITERS).delimiter
    except (OSError, csv.Error):
        return ","


def broken_json_line(files: dict[str, str]) -> str | None:
    """``'FILE' line N is not valid JSON (REASON)`` for the first line of a JSON-lines file that does not parse (a ``.json`` file
    holding one document: the place its parser stops), or None when every file parses."""
    for path in files.values():
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if str(path).endswith(".json") and text.lstrip().startswith("["):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                return f"{str(path)!r} line {exc.lineno} is not valid JSON ({exc.msg})"
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                return f"{str(path)!r} line {n} is not valid JSON ({reason}: {line.strip()[:60]!r})"
            if not isinstance(row, dict):
                return f"{str(path)!r} line {n} is not a JSON object ({line.strip()[:60]!r})"
    return None


#: the most bytes a file of inputs or labels given on the command line is read to (64 MiB)
MAX_INPUT_BYTES = 64 << 20


def read_text_bounded(path: Path, what: str = "file", limit: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of ``path``, refused in one line when it is not a regular file (a FIFO would block, a
    device such as /dev/zero never ends) or holds more than ``limit`` bytes."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} {str(path)!r} not found") from None
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{what} {str(path)!r} is not a regular file (a folder, pipe or device)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DataError(f"{what} {str(path)!r} is over {limit >> 20} MiB; split it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read {str(path)!r}: it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None

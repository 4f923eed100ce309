"""Reading a JSON data file with one-line errors (shared by the format readers)."""

from __future__ import annotations

import json
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

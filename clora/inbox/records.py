"""The inbox beside a library: inputs the router was unsure of, and labelled feedback.

Layout, in the folder ``<library>.inbox`` next to the library (never inside it, so the
library's own files stay exactly as its versions describe them):

- ``records.jsonl``: one JSON object per line (see :class:`Record`); when it reaches half
  of ``max_bytes`` it becomes ``records.1.jsonl`` (replacing the older one) and a new file
  starts, so the two together never hold much more than ``max_bytes``.
- ``eval/<task>.jsonl``: feedback for tasks the library already has, kept as those tasks'
  evaluation data with its source (the newest ``MAX_EVAL_PER_TASK`` per task, within an
  eighth of ``max_bytes``). A server adds to it only for a request with the admin key: it
  decides the promotion gate.
- ``clusters.json``: the last ``clora inbox cluster`` (record id -> cluster).
- ``candidates/<name>/``: promotions that were built and refused by the gate.

Every change holds the inbox's lock (``.lock``, flock), so a server appending and a
person labelling never lose each other's lines. The inbox stores users' inputs: it is
written only when a server records (``--record-unrouted``) or feedback is sent.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clora.errors import DataError, StorageError
from clora.library.store import check_task_name

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer at a time is the user's to ensure
    fcntl = None

RECORDS, ROTATED, CLUSTERS, EVAL, CANDIDATES, LOCK = ("records.jsonl", "records.1.jsonl", "clusters.json", "eval",
                                                       "candidates", ".lock")
DEFAULT_MAX_BYTES = 16 << 20
MAX_EVAL_PER_TASK = 1000
KINDS = ("unrouted", "feedback")


@dataclass
class Record:
    """One inbox entry: an unrouted input (``guess``/``confidence``/``answer``: what the router said and the
    answer given) or a feedback example (``label`` or ``target``; ``task`` when it names a library task)."""

    input: str
    kind: str = "unrouted"
    guess: str | None = None
    confidence: float | None = None
    answer: str | None = None
    label: str | None = None
    target: str | None = None
    task: str | None = None
    #: how many times this same record arrived (repeats are read as one record: ``Inbox.records``)
    count: int = 1
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not self.input.strip():
            raise DataError(f"an inbox record needs a non-empty input text, got {self.input!r}", field="input")
        if self.kind not in KINDS:
            raise DataError(f"unknown record kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.confidence is not None and (isinstance(self.confidence, bool) or not isinstance(
                self.confidence, (int, float)) or not math.isfinite(self.confidence)):
            raise DataError(f"a record's confidence must be a finite number, got {self.confidence!r}",
                            field="confidence")
        for name in ("guess", "answer", "id", "time"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise DataError(f"a record's {name} must be text, got {value!r}", field=name)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise DataError(f"a record's count must be a positive integer, got {self.count!r}", field="count")
        for name in ("label", "target", "task"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise DataError(f"{name} must be a non-empty string, got {value!r}", field=name)

    @property
    def answer_label(self) -> str | None:
        """The known correct answer (label or target), if any."""
        return self.label if self.label is not None else self.target

    @property
    def key(self) -> tuple:
        """What makes two records the same: a repeat of an input (with the same label, if any) is one record."""
        return self.kind, self.input, self.label, self.target, self.task

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "count" and v == 1)}

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` (whole JSON lines) to ``path``: all of it, or nothing.

    A write the disk refuses part-way is cut back to where the file ended, so no record is left torn;
    a file that a killed writer left ending mid-line gets a newline first, so the torn line stays one
    skipped line and never swallows the next record. The caller holds the inbox lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        if start and os.pread(fd, 1, start - 1) != b"\n":
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            os.ftruncate(fd, start)  # freeing space cannot fail for want of it
            raise StorageError(f"the inbox could not be written ({exc.strerror or exc}); nothing of this "
                               "write was kept, earlier records are intact") from None
    finally:
        os.close(fd)


def check_inbox_folder(library: Path, folder: Path) -> None:
    """Refuse an inbox inside (or equal to) its library, or one that is a file.

    Inside the library, a writer's clean-up would delete labelled feedback as files no version references,
    and the inbox's lock would be the library writer's lock (a server's records would wait on every commit).
    """
    library, folder = Path(library).resolve(), Path(folder).resolve()
    if folder == library or library in folder.parents:
        raise DataError(f"the inbox {str(folder)!r} is inside the library {str(library)!r}: a library's clean-up "
                        "deletes files no version references, labelled feedback among them; put the inbox beside it "
                        "(the default, LIBRARY.inbox)", field="inbox_folder")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"the inbox {str(folder)!r} is a file, not a folder", field="inbox_folder")


def inbox_path(library: Path) -> Path:
    """The inbox folder of ``library``: ``<library>.inbox`` beside it."""
    library = Path(library).resolve()
    return library.with_name(library.name + ".inbox")


class Inbox:
    """The inbox of one library (created on the first write)."""

    def __init__(self, library: Path, max_bytes: int = DEFAULT_MAX_BYTES, folder: Path | None = None):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 4096:
            raise DataError(f"the inbox bound must be at least 4096 bytes, got {max_bytes!r}", field="max_bytes")
        self.library, self.max_bytes = Path(library), max_bytes
        self.folder = Path(folder) if folder is not None else inbox_path(self.library)
        check_inbox_folder(self.library, self.folder)
        self.skipped = 0  # damaged lines the last records() read passed over

    @contextlib.contextmanager
    def locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK, "a+") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield

    def append(self, records: list[Record]) -> None:
        """Add ``records``, rotating the file first when it has reached half the bound."""
        if not records:
            return
        lines = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        with self.locked():
            path = self.folder / RECORDS
            size = path.stat().st_size if path.exists() else 0
            if size and size + len(lines) > self.max_bytes // 2:
                os.replace(path, self.folder / ROTATED)
            append_whole(path, lines[: self.max_bytes // 2])  # a batch over the whole bound keeps its first part

    def records(self) -> list[Record]:
        """Every record, oldest first (the rotated file, then the current one). A record that arrived again
        (same input, same label) is read once, its ``count`` the number of arrivals: a client repeating one
        input makes one record, not a cluster of copies."""
        seen: dict[tuple, Record] = {}
        self.skipped = 0
        for name in (ROTATED, RECORDS):
            path = self.folder / name
            if path.is_dir():
                raise DataError(f"the inbox file {str(path)!r} is a folder", field="inbox_folder")
            if not path.exists():
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    record = Record.from_dict(json.loads(line))
                except (ValueError, TypeError, AttributeError, DataError):
                    self.skipped += 1  # a line cut off by a crash or by the bound: skip it, keep the rest
                    continue
                if record.key in seen:
                    seen[record.key].count += record.count
                else:
                    seen[record.key] = record
        return list(seen.values())

    def size_bytes(self) -> int:
        return sum((self.folder / n).stat().st_size for n in (RECORDS, ROTATED) if (self.folder / n).exists())

    def rewrite(self, change) -> int:
        """Apply ``change(records) -> records`` to the whole inbox atomically; returns the number kept.

        ``change`` may raise (nothing is written then). An inbox never written to stays unwritten.
        """
        if not self.folder.is_dir():
            return len(change([]))
        with self.locked():
            kept = change(self.records())
            tmp = self.folder / f".{RECORDS}.tmp-{os.getpid()}"
            tmp.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in kept),
                           encoding="utf-8")
            os.replace(tmp, self.folder / RECORDS)
            (self.folder / ROTATED).unlink(missing_ok=True)
        return len(kept)

    @staticmethod
    def _check_ids(records: list[Record], ids) -> None:
        missing = sorted(set(ids) - {r.id for r in records})
        if missing:
            raise DataError(f"no inbox record with id {', '.join(missing[:5])}", field="ids")

    def label(self, labels: dict[str, str], field_name: str = "label") -> int:
        """Set ``label`` (or ``target``) of the records with these ids; returns how many were labelled."""
        for value in labels.values():
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"a {field_name} must be a non-empty string, got {value!r}", field="labels")

        def change(records):
            self._check_ids(records, labels)
            for r in records:
                if r.id in labels:
                    setattr(r, field_name, labels[r.id])
            return records

        self.rewrite(change)
        return len(labels)

    def drop(self, ids: set[str], must_exist=()) -> int:
        """Remove the records with these ids (those in ``must_exist`` must be there); returns how many went."""
        counts = {"before": 0}

        def change(records):
            self._check_ids(records, must_exist)
            counts["before"] = len(records)
            return [r for r in records if r.id not in ids]

        kept = self.rewrite(change)
        return counts["before"] - kept

    def add_evaluation(self, task: str, records: list[Record], source: str) -> None:
        """Keep feedback for a library task as its evaluation data, with where it came from (``source``).

        Appended as whole lines (``append_whole``); past an eighth of the inbox's bound the file is cut to
        its newest ``MAX_EVAL_PER_TASK`` lines within half that, so a rewrite happens once per many examples,
        never on every one (readers use the newest ``MAX_EVAL_PER_TASK``).
        """
        check_task_name(task)  # a name read from a manifest must not lead a path out of the inbox
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = "".join(json.dumps({"sentence": r.input, "label": r.answer_label, "source": source, "time": stamp},
                                   ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        bound = self.max_bytes // 8
        with self.locked():
            path = self.folder / EVAL / f"{task}.jsonl"
            path.parent.mkdir(exist_ok=True)
            append_whole(path, lines[:bound])
            if path.stat().st_size > bound:
                kept, total = [], 0
                for line in reversed(path.read_bytes().splitlines(keepends=True)[-MAX_EVAL_PER_TASK:]):
                    total += len(line)
                    if total > bound // 2:
                        break
                    kept.append(line)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                tmp.write_bytes(b"".join(reversed(kept)))
                os.replace(tmp, path)

    def evaluation(self, task: str) -> list[tuple[str, str, str]]:
        """``(input, label, source)`` of the feedback kept for ``task`` (damaged lines skipped, counted)."""
        check_task_name(task)
        path = self.folder / EVAL / f"{task}.jsonl"
        if not path.exists():
            return []
        rows, self.skipped = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                text, label = row["sentence"], row["label"]
                if not (isinstance(text, str) and isinstance(label, str) and text.strip() and label.strip()):
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                self.skipped += int(bool(line.strip()))
                continue
            rows.append((text, label, str(row.get("source", "feedback"))))
        return rows[-MAX_EVAL_PER_TASK:]


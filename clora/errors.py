"""User-facing errors.

Every mistake a user can make (a bad file, an unknown name, an impossible setting) is
raised as a :class:`CloraError` whose message is one complete sentence naming the bad
value. The message speaks of values (``the data folder``), never of command-line flags:
the same error reaches Python users. ``field`` names the setting at fault
(``"data_dir"``) when there is one; the CLI adds the matching flag (``--data-dir``) to
the line it prints, and exits non-zero without a traceback.
"""


class CloraError(Exception):
    """A problem with the user's input or environment, explained in one line.

    ``field``: the name of the setting the problem is about (a RunConfig field or a
    function argument), or ``None``.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DataError(CloraError):
    """A stream, task file or data set is missing, malformed or inconsistent."""


class ConfigError(CloraError):
    """An option or setting has a value clora cannot use."""


class ModelError(CloraError):
    """The base model cannot be loaded or adapted as asked."""


class StorageError(CloraError):
    """The disk refused a read or write (full, read-only, gone); ``status`` is what a server answers."""

    status = 503


def as_storage_error(exc: BaseException) -> StorageError | None:
    """``exc`` as a one-line :class:`StorageError` when it is the file system's refusal, else None.

    safetensors reports a full disk as its own ``SafetensorError`` ("I/O error: No space left on
    device"), so that one is recognised by name as well.
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ConnectionError):  # a closed pipe or socket (``clora ... | head``): not the disk
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if exc.filename else ""
        return StorageError(f"the disk refused a file operation: {exc.strerror or exc}{where}; a library is only "
                            "changed by a complete commit, so it stays at its last version")
    if type(exc).__name__ == "SafetensorError" and "error" in str(exc).lower():
        return StorageError(f"the disk refused a file operation: {exc}; a library is only changed by a "
                            "complete commit, so it stays at its last version")
    return None

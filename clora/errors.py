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

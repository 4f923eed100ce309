"""User-facing errors.

Every mistake a user can make (a bad file, an unknown name, an impossible setting) is
raised as a :class:`CloraError` whose message is one complete sentence naming the bad
value. The CLI prints that line and exits non-zero; it never shows a traceback for them.
"""


class CloraError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(CloraError):
    """A stream, task file or data set is missing, malformed or inconsistent."""


class ConfigError(CloraError):
    """An option or setting has a value clora cannot use."""


class ModelError(CloraError):
    """The base model cannot be loaded or adapted as asked."""

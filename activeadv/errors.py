"""Domain errors.

Every module raises ``ActiveAdvError`` (or a subclass) for bad input or a broken
environment; only the CLI turns them into one-line messages and exit codes, so
the library stays usable from Python with real exceptions.
"""


class ActiveAdvError(Exception):
    """A problem the user can fix (bad path, bad option, server down, stale schema)."""


class DataError(ActiveAdvError):
    """A dataset spec, file or image cannot be read."""


class ConfigError(ActiveAdvError):
    """An option is out of range or inconsistent with the data."""


class SchemaError(ActiveAdvError):
    """The database is empty or its schema is older than this version of activeadv."""


class NotFoundError(ActiveAdvError):
    """A project (or another named thing) does not exist in the database."""


class LabelError(ActiveAdvError):
    """Labels refer to unknown items or classes; nothing was stored."""


class LockedError(ActiveAdvError):
    """Another process is running a round on the same project."""


class LabelStudioError(ActiveAdvError):
    """Label Studio is unreachable, refuses the token, or lost a project/task; the message never holds the token."""


class LabelStudioNotFoundError(LabelStudioError):
    """Label Studio answered 404: the project or task was deleted there."""


class WaitTimeoutError(ActiveAdvError):
    """Fewer labels than asked for arrived before the timeout; every label that did arrive is stored."""

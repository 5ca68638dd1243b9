"""User-facing errors: one line that says what went wrong and what to do.

The CLI prints ``str(error)`` and exits 2 for any KeygapError, so messages must stand alone.
"""


class KeygapError(Exception):
    """Base class of every error a user can cause and fix (bad input, missing data)."""


class StoreError(KeygapError):
    """The store is missing, unreadable, of another schema version, or damaged."""


class SqlError(KeygapError):
    """A SQL statement was refused or failed."""

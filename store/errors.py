"""User-facing errors: one line that says what went wrong and what to do.

The CLI prints ``str(error)`` and exits 2 for any KeygapError, so messages must stand alone.
"""

import sys


class KeygapError(Exception):
    """Base class of every error a user can cause and fix (bad input, missing data)."""


class StoreError(KeygapError):
    """The store is missing, unreadable, of another schema version, or damaged."""


class StoreNotice(UserWarning):
    """Something the user should know that did not stop the command (an answer not cached because the
    store is read-only or full); the CLI prints it as one line, ``keygap CMD: note: ...``."""


class SqlError(KeygapError):
    """A SQL statement was refused or failed."""


def first_line(exc: BaseException | None) -> str:
    """The first line of an exception's message (its type name when it has none): what a one-line error
    quotes of a library's multi-line message."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def warn_problems(problems: list[str], command: str) -> None:
    """Damaged files were left out of what the command saw: say which, on stderr, one line each."""
    for problem in problems:
        print(f"keygap {command}: warning: {problem}", file=sys.stderr)

"""The one error type of the statistics package.

It subclasses ValueError (the CLI prints any ValueError as one line) and lives here, not in store, because
stats must not import store: the measures are usable on plain numpy arrays."""


class StatsInputError(ValueError):
    """Input that a measure cannot use; the message says what to pass instead."""

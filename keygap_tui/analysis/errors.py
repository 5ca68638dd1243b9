"""Errors a user of the analysis layer can cause and fix; the CLI prints them as one line."""

from store.errors import KeygapError


class AnalysisError(KeygapError):
    """A question the store cannot answer as asked (missing slice, bad parameter, too few keys)."""


class Cancelled(KeygapError):
    """The caller's should_stop() returned True; partial work was discarded (cached parts are kept)."""

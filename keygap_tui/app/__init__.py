"""The Textual application behind `keygap tui` (and `keygap` alone in a terminal)."""

from __future__ import annotations


def run(store: str, **options) -> None:
    """Open the TUI on ``store`` and return when the user quits (what `keygap demo` calls)."""
    from .app import KeygapApp

    KeygapApp(store, **options).run()

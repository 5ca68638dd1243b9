"""The Textual application behind `keygap tui` (and `keygap` alone in a terminal)."""

from __future__ import annotations


def run(store: str, **options) -> None:
    """Open the TUI on ``store`` and return when the user quits (what `keygap demo` calls)."""
    from store.cli import remember_store

    from .app import KeygapApp

    remember_store(store)  # `keygap` with no --store opens it next time (store.cli.choose_store)
    KeygapApp(store, **options).run()

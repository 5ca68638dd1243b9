"""The Textual application behind `keygap tui` (and `keygap` alone in a terminal)."""

from __future__ import annotations


def run(store: str, **options) -> None:
    """Open the TUI on ``store`` and return when the user quits (what `keygap demo` calls)."""
    from store.store_option import remember_store

    from .app import KeygapApp

    remember_store(store)  # `keygap` with no --store opens it next time (store.store_option.choose_store)
    KeygapApp(store, **options).run()

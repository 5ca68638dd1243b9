"""Where the store is: the --store option every subcommand shares, its default, and the store last opened.

Standard library only, and apart from store/cli.py: `keygap ingest` needs this option on GPU servers that
have no duckdb, so it must not come with the SQL command's imports.
"""

from __future__ import annotations

import argparse
import os
import sys

from .files import atomic_write_bytes

DEFAULT_STORE = "./keygap-store"
LAST_STORE_FILE = "last-store"  # under the user's state folder: the store `keygap demo` / `keygap tui` opened last


def user_state_dir() -> str:
    """$XDG_STATE_HOME/keygap (~/.local/state/keygap): what keygap remembers between runs."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "keygap")


def remember_store(store: str) -> None:
    """Remember ``store`` as the one to open when none is named (a local folder only; failures are ignored:
    this is a convenience, never a reason to fail)."""
    if "://" in store:
        return
    folder = user_state_dir()
    try:
        os.makedirs(folder, exist_ok=True)
        atomic_write_bytes(os.path.join(folder, LAST_STORE_FILE), (os.path.abspath(store) + "\n").encode("utf-8"))
    except OSError:
        pass


def choose_store(reading: bool = True) -> tuple[str, str]:
    """The store to use when --store is not given, and a note saying why when it is not the plain default.

    $KEYGAP_STORE, else ./keygap-store; for reading commands, when ./keygap-store does not exist, the store
    that `keygap demo` or `keygap tui` opened last (so `keygap` after `make demo` opens the demo store).
    Writing commands (ingest) never fall back: keys must not land in a store the user did not name.
    """
    env = os.environ.get("KEYGAP_STORE")
    if env:
        return env, ""
    if not reading or os.path.exists(DEFAULT_STORE):
        return DEFAULT_STORE, ""
    try:
        with open(os.path.join(user_state_dir(), LAST_STORE_FILE), encoding="utf-8") as f:
            last = f.read().strip()
    except OSError:
        return DEFAULT_STORE, ""
    if last and os.path.isfile(os.path.join(last, "keygap.json")):
        return last, f"no {DEFAULT_STORE} here: opened {last}, the store used last (--store or KEYGAP_STORE chooses)"
    return DEFAULT_STORE, ""


def default_store(reading: bool = True) -> str:
    """choose_store's path; its note goes to stderr, so a script's stdout stays clean."""
    store, note = choose_store(reading)
    if note:
        print(f"keygap: {note}", file=sys.stderr)
    return store


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the key store (default: $KEYGAP_STORE or {DEFAULT_STORE})",
    )

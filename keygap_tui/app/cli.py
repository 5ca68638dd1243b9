"""`keygap tui`: registered with stdlib only, so `keygap --help` never imports Textual."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tui",
        help="browse a store in the terminal: compare slices, scatter, control groups, layers, SQL",
        description="Open the terminal UI on a store. Keys: F1 or ? for help, ctrl+p for every action. "
        "Settings and keys: $XDG_CONFIG_HOME/keygap/tui.toml; remembered state: $XDG_STATE_HOME/keygap/tui.json.",
    )
    p.add_argument("--store", default=None, metavar="DIR",
                   help="the key store (default: $KEYGAP_STORE or ./keygap-store)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="config file (default: $XDG_CONFIG_HOME/keygap/tui.toml)")
    p.set_defaults(func=run_tui)


def run_tui(args) -> int:
    import sys
    from pathlib import Path

    from store.errors import KeygapError
    from store.reader import KeyStore
    from store.store_option import choose_store

    store, note = (args.store, "") if args.store else choose_store()
    KeyStore(store)  # a missing or foreign store is a one-line error here, before the screen changes
    # Textual would wait forever for a terminal's answer that a file or pipe never gives
    for name, stream in (("output", sys.stdout), ("input", sys.stdin)):
        if not (stream is not None and stream.isatty()):
            raise KeygapError(f"the explorer needs a terminal, and its {name} is redirected: run it in a terminal "
                              "(over SSH too), or use `keygap info` / `keygap compare` / `keygap sql` for text")
    from . import run

    run(store, config_path=Path(args.config) if getattr(args, "config", None) else None, store_note=note)
    return 0

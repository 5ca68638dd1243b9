"""The `keygap` console script.

Each subcommand module registers its parser using only the standard library and imports its heavy
dependencies when it runs, so `keygap ingest` works on a GPU server without duckdb or textual, and
`keygap --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

_COMMAND_MODULES = (
    "ingest.cli",
    "store.cli",
    "keygap_tui.analysis.cli",
    "keygap_tui.app.cli",
    "keygap_tui.demo",
)


def build_parser() -> argparse.ArgumentParser:
    from store.store_option import add_store_argument

    parser = argparse.ArgumentParser(
        prog="keygap",
        description="Measure how far image keys sit from text keys inside a vision-language model's attention.",
    )
    parser.add_argument("--version", action="version", version=f"keygap {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not name.startswith(str(exc.name)):  # a missing dependency inside the module: surface it
                raise
            continue
        module.register(sub)
    for p in sub.choices.values():
        if "--store" not in p._option_string_actions:
            add_store_argument(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        if sys.stdout.isatty() and "tui" in _commands(parser):
            argv = ["tui"]
        else:
            parser.print_help()
            return 0
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    from store.errors import KeygapError

    try:
        return int(args.func(args) or 0)
    except KeygapError as exc:
        print(f"keygap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keygap {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `keygap sql ... | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        if os.environ.get("KEYGAP_DEBUG"):
            raise
        print(f"keygap {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keygap")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())

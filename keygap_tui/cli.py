"""The `keygap` console script.

Each subcommand module registers its parser using only the standard library and imports its heavy
dependencies when it runs, so `keygap ingest` works on a GPU server without duckdb or textual, and
`keygap --help` is instant.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings

_COMMAND_MODULES = (
    "ingest.cli",
    "store.cli",
    "keygap_tui.analysis.cli",
    "keygap_tui.app.cli",
    "keygap_tui.demo",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong and where help is), not usage plus error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    from store.store_option import add_store_argument

    parser = OneLineParser(
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
    from store.errors import KeygapError, StoreNotice

    command = f"keygap {args.command}"
    with warnings.catch_warnings():
        warnings.simplefilter("always", StoreNotice)
        warnings.showwarning = _notice_printer(command, warnings.showwarning)
        try:
            return int(args.func(args) or 0)
        except KeygapError as exc:
            print(f"{command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `keygap sql ... | head`: the reader left, which is not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except Exception as exc:  # the last resort: each known failure has its own message at its boundary
            if os.environ.get("KEYGAP_DEBUG"):
                raise
            print(f"{command}: error: {unexpected(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, (ValueError, OSError, MemoryError)) else 1


def unexpected(exc: BaseException) -> str:
    """One line for a failure no boundary check named: what happened, and how to learn more."""
    from store.errors import first_line

    if isinstance(exc, MemoryError):
        return ("out of memory: ask for less (a smaller --n, --permutations or --batch-size) "
                "or use a machine with more memory")
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{exc.strerror}{where}: free some space and run the command again"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{exc.strerror}{where}: use a path you can write to"
        return f"{exc.strerror}{where}"
    if isinstance(exc, ValueError):
        return first_line(exc)
    return (f"{type(exc).__name__}: {first_line(exc)} (unexpected: run again with KEYGAP_DEBUG=1 for the "
            "traceback and report it)")


def _notice_printer(command: str, fallback):
    """Print keygap's notices (e.g. an answer not cached in a read-only store) once each, on one line."""
    from store.errors import StoreNotice

    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, StoreNotice):
            return fallback(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            print(f"{command}: note: {text}", file=sys.stderr)

    return show


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

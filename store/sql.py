"""Read-only SQL over a store, as `keygap sql` runs it."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .catalog import SqlCatalog
from .errors import SqlError
from .jsonsafe import json_safe

FORMATS = ("table", "csv", "json", "parquet")
DEFAULT_TIMEOUT_S = 300.0

_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.S)
_EXPLAIN = re.compile(r"^EXPLAIN\s+(?P<analyze>ANALY[SZ]E\s+)?", re.I)
_PIVOT = re.compile(r"^\(*\s*(UN)?PIVOT\b", re.I)
_REFUSED = (
    "statements are refused: keygap sql is read-only (SELECT, FROM, WITH, PIVOT, DESCRIBE, SHOW, SUMMARIZE, "
    "EXPLAIN); to export a result use --format/--out"
)


def default_memory_limit() -> str:
    """Half of the machine's memory: DuckDB's own default (80 %) leaves too little for the rest."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GiB"
    return f"{max(1, total // 2 // 2**20)}MiB"


def check_read_only(query: str) -> None:
    """The second layer behind a catalog that cannot touch files: refuse anything but reading statements.

    EXPLAIN is judged by what it explains, and EXPLAIN ANALYZE (which executes its statement) only of a
    query; PIVOT, which DuckDB parses as several statements, is a query too.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from None
    if not statements:
        raise SqlError("empty query: give a SELECT statement, e.g. SELECT * FROM keys LIMIT 5")
    for st in statements:
        _check_statement(st)


def _check_statement(st: duckdb.Statement) -> None:
    kind = str(st.type).split(".")[-1]
    text = _LEADING_NOISE.sub("", st.query)
    if st.type == duckdb.StatementType.SELECT:
        return
    if st.type == duckdb.StatementType.MULTI and _PIVOT.match(text):
        return
    if st.type == duckdb.StatementType.EXPLAIN:
        m = _EXPLAIN.match(text)
        inner = duckdb.extract_statements(text[m.end():]) if m else []
        if m is None or not inner:
            raise SqlError("EXPLAIN needs a query to explain, e.g. EXPLAIN SELECT count(*) FROM keys")
        for sub in inner:
            if m["analyze"] and sub.type != duckdb.StatementType.SELECT:
                raise SqlError(
                    f"EXPLAIN ANALYZE executes its statement, so it is refused for {str(sub.type).split('.')[-1]}: "
                    "EXPLAIN ANALYZE takes a SELECT only"
                )
            _check_statement(sub)
        return
    raise SqlError(f"{kind} {_REFUSED}")


def run_query(con: duckdb.DuckDBPyConnection, query: str, *, timeout: float | None = None) -> pa.Table:
    """Run a read-only query on a catalog connection; DuckDB errors become one-line SqlErrors.

    ``timeout`` (seconds) interrupts the query from a timer; the caller's thread does the work, so a
    caller that wants Ctrl-C to stop it at once runs this in a thread (see :func:`query_store`).
    """
    check_read_only(query)
    timer = None
    expired = threading.Event()
    if timeout:
        def expire() -> None:
            expired.set()
            con.interrupt()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        rel = con.sql(query)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        if expired.is_set():
            raise SqlError(f"the query ran past --timeout {timeout:g} s and was stopped: "
                           "narrow it (WHERE layer = ..., LIMIT) or raise --timeout") from None
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise SqlError(f"the query needs more than the memory limit: narrow it or raise --memory-limit "
                           f"({one_line(exc)})") from None
        if _VANISHED.search(str(exc)):
            raise StoreChanged("a file of the store was replaced while the query read it (a compaction): run the "
                               "query again") from None
        raise SqlError(one_line(exc)) from None
    finally:
        if timer is not None:
            timer.cancel()


class StoreChanged(SqlError):
    """A file the query was reading went away (a compaction replaced it); the same query again sees the new files."""


_VANISHED = re.compile(r"Failed to open local file .*No such file or directory", re.S)


def query_store(
    store: str | os.PathLike[str] | SqlCatalog,
    query: str,
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    memory_limit: str | None = None,
) -> pa.Table:
    """Run one query on a fresh read-only connection; Ctrl-C stops it at once (KeyboardInterrupt)."""
    check_read_only(query)
    if isinstance(store, SqlCatalog):
        catalog = store
    else:
        catalog = SqlCatalog(store, memory_limit=memory_limit or default_memory_limit())
    try:
        return _query_once(catalog, query, timeout)
    except StoreChanged:
        catalog.refresh()
        return _query_once(catalog, query, timeout)


def _query_once(catalog: SqlCatalog, query: str, timeout: float | None) -> pa.Table:
    try:
        con = catalog.connect()
    except RuntimeError as exc:  # Ctrl-C while DuckDB registers the views arrives as this
        if str(exc) == "Query interrupted":
            raise KeyboardInterrupt from None
        raise
    try:
        with interrupt_on_sigint(con) as interrupted:
            try:
                table = run_query(con, query, timeout=timeout)
            except (SqlError, RuntimeError) as exc:
                # DuckDB turns a KeyboardInterrupt it sees itself into RuntimeError("Query interrupted")
                if interrupted.is_set() or str(exc) == "Query interrupted":
                    raise KeyboardInterrupt from None
                raise
            if interrupted.is_set():
                raise KeyboardInterrupt
    finally:
        con.close()
    return table


@contextmanager
def interrupt_on_sigint(con: duckdb.DuckDBPyConnection) -> Iterator[threading.Event]:
    """Make Ctrl-C interrupt ``con`` within milliseconds.

    Python runs its SIGINT handler only between bytecodes of the main thread, which sits inside DuckDB
    while a query runs, so the KeyboardInterrupt would wait for the query to end. The C-level handler
    does write the signal number to the wakeup fd at once, from whichever thread the signal hits; a
    watcher thread reading that fd interrupts DuckDB. (Running the query in a worker thread instead is
    worse: DuckDB 2.0.1 let such a thread die mid-query and left the connection busy.)
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            # once interrupted, interrupt again every 50 ms: an interrupt that lands before DuckDB has
            # started the query is lost, and the query would then run to its end
            ready, _, _ = select.select([r], [], [], 0.05 if interrupted.is_set() else None)
            if ready:
                data = os.read(r, 64)
                if not data or b"\xff" in data:
                    return
                if signal.SIGINT in data:
                    interrupted.set()
            if interrupted.is_set():
                try:
                    con.interrupt()
                except duckdb.Error:  # the connection closed under us: nothing left to stop
                    return

    watcher = threading.Thread(target=watch, name="keygap-sigint", daemon=True)
    watcher.start()
    try:
        yield interrupted
    finally:
        signal.set_wakeup_fd(previous)
        os.write(w, b"\xff")
        watcher.join()  # it leaves at the b"\xff" at once; a timeout here let it outlive the pipe under load
        os.close(w)
        os.close(r)


def one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


def format_cell(value: object, width: int = 48) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        inner = ", ".join(format_cell(v, 12) for v in value[:6])
        text = f"[{inner}{', ...' if len(value) > 6 else ''}] ({len(value)})"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def text_safe(table: pa.Table) -> pa.Table:
    """Binary columns as base64 text named ``<column>_base64`` (CSV and JSON hold no bytes; the name says
    how to get them back): the raw ``key`` column exports losslessly instead of failing on invalid UTF-8."""
    for i, f in enumerate(table.schema):
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type):
            values = [None if v is None else base64.b64encode(v).decode("ascii") for v in table.column(i).to_pylist()]
            table = table.set_column(i, f"{f.name}_base64", pa.array(values, pa.string()))
    return table


def render(table: pa.Table, fmt: str) -> bytes:
    """Serialise a result: 'table' is for people, the others for programs."""
    if fmt == "table":
        return render_table(table).encode()
    if fmt == "csv":
        buf = io.BytesIO()
        flat = text_safe(table)
        for i, f in enumerate(flat.schema):  # CSV has no list type: write lists as JSON text
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_struct(f.type):
                values = [None if v is None else json.dumps(json_safe(v)) for v in flat.column(i).to_pylist()]
                flat = flat.set_column(i, f.name, pa.array(values, pa.string()))
        pacsv.write_csv(flat, buf)
        return buf.getvalue()
    if fmt == "json":
        rows = json_safe(text_safe(table).to_pylist())
        return (json.dumps(rows, ensure_ascii=False, indent=1, allow_nan=False) + "\n").encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    raise SqlError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def render_table(table: pa.Table, max_rows: int = 200) -> str:
    """A table for people. Cells are plain Text, never markup: a value like "[/x]" prints as itself."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        t.add_column(Text(name), overflow="ellipsis", no_wrap=True, max_width=50)
    for row in table.slice(0, max_rows).to_pylist():
        t.add_row(*(Text(format_cell(v)) for v in row.values()))
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    console.print(t)
    if table.num_rows > max_rows:
        more = f"({table.num_rows} rows, {max_rows} shown; use --format csv --out FILE for all)\n"
    else:
        more = f"({table.num_rows} rows)\n"
    return out.getvalue() + more

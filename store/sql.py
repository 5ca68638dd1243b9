"""Read-only SQL over a store, as `keygap sql` runs it."""

from __future__ import annotations

import io
import json
import math

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .catalog import connect
from .errors import SqlError

FORMATS = ("table", "csv", "json", "parquet")
_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def check_read_only(query: str) -> None:
    """Refuse anything but SELECT / EXPLAIN (also covers SHOW, DESCRIBE, SUMMARIZE, which parse as SELECT)."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from None
    if not statements:
        raise SqlError("empty query: give a SELECT statement, e.g. SELECT * FROM keys LIMIT 5")
    for st in statements:
        if st.type not in _ALLOWED:
            kind = str(st.type).split(".")[-1]
            raise SqlError(
                f"{kind} statements are refused: keygap sql is read-only (SELECT, EXPLAIN, DESCRIBE, SHOW only); "
                "to export results use --format/--out"
            )


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Run a read-only query on a catalog connection; DuckDB errors become one-line SqlErrors."""
    check_read_only(query)
    try:
        rel = con.sql(query)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from None


def query_store(store: str, query: str) -> pa.Table:
    return run_query(connect(store), query)


def one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


def format_cell(value, width: int = 48) -> str:
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


def render(table: pa.Table, fmt: str) -> bytes:
    """Serialise a result: 'table' is for people, the others for programs."""
    if fmt == "table":
        return render_table(table).encode()
    if fmt == "csv":
        buf = io.BytesIO()
        flat = table.select([c for c in table.column_names if not pa.types.is_list(table.schema.field(c).type)])
        if flat.num_columns != table.num_columns:
            lists = [c for c in table.column_names if c not in flat.column_names]
            for c in lists:  # CSV has no list type: write lists as JSON text
                flat = flat.append_column(c, pa.array([json.dumps(v) for v in table[c].to_pylist()]))
        pacsv.write_csv(flat, buf)
        return buf.getvalue()
    if fmt == "json":
        rows = table.to_pylist()
        return (json.dumps(rows, default=_json_default, ensure_ascii=False, indent=1) + "\n").encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    raise SqlError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def render_table(table: pa.Table, max_rows: int = 200) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        t.add_column(name, overflow="ellipsis", no_wrap=True, max_width=50)
    for row in table.slice(0, max_rows).to_pylist():
        t.add_row(*(format_cell(v) for v in row.values()))
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(t)
    more = f"({table.num_rows} rows, {max_rows} shown; use --format csv --out FILE for all)\n" if table.num_rows > max_rows else f"({table.num_rows} rows)\n"
    return console.file.getvalue() + more


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)

"""Write what a view shows to CSV, JSON or Parquet, next to each other under one export folder.

Binary columns (the raw `key`) become base64 text in a column named `<name>_base64` in CSV and JSON (the
name says the encoding); Parquet keeps them as bytes.

Rows are serialised by store.sql.render, the same writer as `keygap sql --format`, so a table exported
from the TUI reads exactly like one exported from the command line. Names count up instead of carrying a
timestamp, so nothing is overwritten and two exports of one view sort in the order they were made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from store.errors import KeygapError

FORMATS = ("csv", "json", "parquet")


class ExportError(KeygapError):
    """Nothing to export, or the export folder cannot be written."""


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Flat Arrow table of dict rows; nested values (params, sides) become JSON text."""
    rows = [dict(r) for r in rows]
    if not rows:
        return pa.table({})
    columns: dict[str, list] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, [])
    for r in rows:
        for k, col in columns.items():
            v = r.get(k)
            if isinstance(v, (dict, list, tuple)):
                v = json.dumps(v, sort_keys=True, default=str)
            col.append(v)
    out = {}
    for k, col in columns.items():
        try:
            out[k] = pa.array(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            out[k] = pa.array([None if v is None else str(v) for v in col], pa.string())
    return pa.table(out)


def next_path(folder: Path, stem: str, ext: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "export"
    i = 1
    while (folder / f"{stem}-{i:03d}.{ext}").exists():
        i += 1
    return folder / f"{stem}-{i:03d}.{ext}"


def export_table(table: pa.Table, folder: str | Path, stem: str, fmt: str) -> Path:
    """Write ``table`` as ``folder/stem-NNN.fmt``; returns the absolute path written."""
    from store.sql import render

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use {' or '.join(FORMATS)}")
    if table.num_rows == 0 and table.num_columns == 0:
        raise ExportError(f"nothing to export in {stem}: compute or run something first")
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = next_path(folder, stem, fmt)
        path.write_bytes(render(table, fmt))
    except OSError as exc:
        raise ExportError(f"cannot write to {folder} ({exc.strerror}): set export_dir in the config file") from None
    return path.resolve()


def export_rows(rows: Iterable[Mapping[str, Any]], folder: str | Path, stem: str, fmt: str) -> Path:
    return export_table(rows_to_table(rows), folder, stem, fmt)

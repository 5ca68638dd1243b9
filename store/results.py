"""The analysis results cache: one small Parquet file per answered question under STORE/results/.

Why Parquet in the store: the cache survives restarts, travels with the data, and DuckDB shows it as the
``results`` view of ``keygap sql``. A question's key hashes every parameter *and* the identity of the
committed key files it read (name, size, mtime of each, from the store's inventory), so re-ingesting a
slice changes the key: stale answers are never returned, and :meth:`ResultsCache.prune_stale` deletes them.
Table-shaped answers (projection
coordinates) go to results/arrays/, outside the ``results`` view's glob, so the view keeps one schema.
pyarrow only (no duckdb), so the analysis code can use it on any machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError, StoreNotice, first_line
from .inventory import Inventory, KeyFile
from .jsonsafe import canonical_json
from .location import Location, open_location
from .schema import RESULTS_DIR, partition_dir, utc_now

RESULTS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # hash of the question (parameters + data identity)
        ("row", pa.int32()),  # order of the row within its answer
        ("created", pa.string()),  # ISO time the answer was computed
        ("kind", pa.string()),  # compare / controls / ...
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("layer", pa.int32()),
        ("rope", pa.string()),
        ("group", pa.string()),  # e.g. image-vs-text, or a control group name
        ("replicate", pa.int32()),  # control-group replicate (-1 when not a replicate)
        ("side_a", pa.string()),  # JSON of the first side (model, benchmark, layer, modality, segments)
        ("side_b", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("p_value", pa.float64()),
        ("ci_low", pa.float64()),  # bootstrap confidence interval of value (level in params.ci), when asked
        ("ci_high", pa.float64()),
        ("n_a", pa.int64()),
        ("n_b", pa.int64()),
        ("seed", pa.int64()),
        ("seconds", pa.float64()),
        ("params", pa.string()),  # JSON: every parameter the number depends on
        ("extra", pa.string()),  # JSON: secondary outputs of the metric
        ("data_id", pa.string()),  # hash of the key files read
        ("depends", pa.string()),  # JSON: {partition dir relative to the store: fingerprint}
    ]
)

ARRAYS_DIR = "arrays"
#: columns that hold JSON text; put() encodes them and get() decodes them, so an answer reads back as the
#: dicts it was written from
JSON_COLUMNS = ("side_a", "side_b", "params", "extra")
#: the cache's own columns, filled by put() rather than taken from the answer's rows
_OWN_COLUMNS = ("key", "row", "created", "data_id", "depends")


def question_key(question: Mapping[str, Any], data_id: str) -> str:
    """Hash of everything an answer depends on: the question's parameters and the data read."""
    digest = hashlib.sha256(canonical_json({"question": question, "data": data_id}).encode())
    return digest.hexdigest()[:32]


def fingerprint(files: Iterable[KeyFile]) -> str:
    """Identity of one partition's committed key files: name, size and mtime (ns) of each; none -> "missing".

    From the store's inventory, so no folder is listed per question, and files a writer or a compaction has
    not committed (yet) change nothing."""
    entries = sorted([posixpath.basename(f.rel), f.size, f.mtime_ns] for f in files)
    if not entries:
        return "missing"
    return hashlib.sha256(canonical_json(entries).encode()).hexdigest()[:24]


def partition_key(partition: Sequence) -> str:
    """A partition's folder relative to the store (keys/model=M/...): how answers name what they read."""
    return partition_dir(Path(""), *partition).as_posix()


class ResultsCache:
    """Answers keyed by :func:`question_key`; each answer is a list of row dicts (RESULTS_SCHEMA columns).

    It lives in the store, wherever the store lives (a folder, or S3 under the store's prefix): an object
    store gets whole-object writes (store/location.py)."""

    def __init__(self, store: str | os.PathLike | Location):
        self.location = store if isinstance(store, Location) else open_location(store)
        self.root = Path(self.location.root)

    # --- data identity -------------------------------------------------------------------------------
    @staticmethod
    def fingerprints(inventory: Inventory, partitions: Iterable[Sequence]) -> dict[str, str]:
        """{partition folder relative to the store: fingerprint} for the partitions a question reads."""
        return {partition_key(p): fingerprint(inventory.files.get(tuple(p), ()))
                for p in sorted(set(map(tuple, partitions)))}

    @staticmethod
    def data_id(fingerprints: Mapping[str, str]) -> str:
        return hashlib.sha256(canonical_json(dict(fingerprints)).encode()).hexdigest()[:24]

    # --- read / write --------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Where an answer is kept, relative to the store."""
        return posixpath.join(RESULTS_DIR, f"part-{key}.parquet")

    def get(self, key: str) -> list[dict] | None:
        """The rows of an answer as put() received them (JSON columns decoded), in their original order, or
        None when it was never computed. Each row also carries the cache's own columns (key, row, created,
        data_id, depends)."""
        table = self._read_or_drop(self.path(key))
        if table is None:
            return None
        rows = table.to_pylist()
        rows.sort(key=lambda r: r["row"])
        for row in rows:
            for name in JSON_COLUMNS:
                row[name] = None if row[name] is None else json.loads(row[name])
        return rows

    def put(self, key: str, rows: list[Mapping[str, Any]], *, depends: Mapping[str, str]) -> str | None:
        """Write an answer whole (a temp file renamed, or one object upload), so a reader never sees half
        of it; returns its path on the store's filesystem, or None when the store cannot be written (read-only,
        full: the answer is still good, just not kept, and a StoreNotice says so).

        ``rows`` are dicts over RESULTS_SCHEMA's columns (other keys are not stored); JSON_COLUMNS may hold
        any JSON-able value and are stored as canonical JSON text."""
        if not rows:
            raise ValueError("refusing to cache an empty answer")
        own = {
            "key": key,
            "created": utc_now(),
            "data_id": self.data_id(depends),
            "depends": canonical_json(dict(depends)),
        }
        records = []
        for i, row in enumerate(rows):
            record = {name: row.get(name) for name in RESULTS_SCHEMA.names if name not in _OWN_COLUMNS}
            for name in JSON_COLUMNS:
                record[name] = None if record[name] is None else canonical_json(record[name])
            if record["replicate"] is None:
                record["replicate"] = -1
            records.append(record | own | {"row": i})
        return self._write(pa.Table.from_pylist(records, schema=RESULTS_SCHEMA), self.path(key))

    # --- array answers (projections) ------------------------------------------------------------------
    # They live one folder down (results/arrays/) so the ``results`` SQL view, which reads
    # results/*.parquet, keeps one schema. The dependencies ride in the file's schema metadata.
    def array_path(self, key: str) -> str:
        return posixpath.join(RESULTS_DIR, ARRAYS_DIR, f"part-{key}.parquet")

    def put_table(
        self, key: str, table: pa.Table, *, depends: Mapping[str, str], info: Mapping[str, Any]
    ) -> str | None:
        """Store a table-shaped answer (e.g. projection coordinates) atomically, with its info as JSON."""
        meta = {
            b"keygap.depends": canonical_json(dict(depends)).encode(),
            b"keygap.info": canonical_json(dict(info)).encode(),
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        return self._write(table, self.array_path(key))

    def get_table(self, key: str) -> tuple[pa.Table, dict] | None:
        """(table, info) stored by put_table, or None."""
        table = self._read_or_drop(self.array_path(key))
        if table is None:
            return None
        info = json.loads((table.schema.metadata or {}).get(b"keygap.info", b"{}"))
        return table, info

    # --- housekeeping --------------------------------------------------------------------------------
    def entries(self) -> list[str]:
        """Every cached answer file (relative to the store): metric rows and array answers."""
        found = []
        for folder in (RESULTS_DIR, posixpath.join(RESULTS_DIR, ARRAYS_DIR)):
            found += sorted(posixpath.join(folder, i.base_name) for i in self.location.list(folder)
                            if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
        return found

    def _depends_of(self, rel: str) -> dict | None:
        try:
            with self.location.fs.open_input_file(self.location.path(rel)) as f:
                if posixpath.basename(posixpath.dirname(rel)) == ARRAYS_DIR:
                    meta = pq.read_schema(f).metadata or {}
                    return json.loads(meta[b"keygap.depends"])
                column = pq.read_table(f, columns=["depends"]).column("depends")
            return json.loads(column[0].as_py()) if len(column) else {}
        except (OSError, pa.ArrowInvalid, ValueError, KeyError):
            return None  # unreadable: treat as stale

    def prune_stale(self, inventory: Inventory | None = None) -> int:
        """Delete answers whose key files changed since (re-ingest, deletion). Returns how many went.
        ``inventory``: the store's current one (scanned here when not given)."""
        if inventory is None:
            from .reader import KeyStore

            inventory = KeyStore(self.location.uri).inventory
        current = {partition_key(key): fingerprint(files) for key, files in inventory.files.items()}
        removed = 0
        for path in self.entries():
            depends = self._depends_of(path)
            if depends is None or any(current.get(rel, "missing") != fp for rel, fp in depends.items()):
                if not self._remove(path):
                    break  # a read-only store: nothing can be pruned
                removed += 1
        return removed

    def clear(self) -> int:
        """Delete every cached answer (e.g. after changing a metric's implementation)."""
        paths = self.entries()
        for path in paths:
            self.location.delete(path)
        return len(paths)

    def _read_or_drop(self, rel: str) -> pa.Table | None:
        """A cached answer's table, or None when absent; a damaged cache file is not worth an error: it is
        dropped (where the store can be written) and the answer recomputed."""
        try:
            with self.location.fs.open_input_file(self.location.path(rel)) as f:
                return pq.read_table(f)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowInvalid):
            if self.location.is_file(rel):
                self._remove(rel)
            return None

    def _write(self, table: pa.Table, rel: str) -> str | None:
        """Write a whole answer file (store/location.py), so a reader never sees half of one. A store that
        cannot be written (read-only, full) is not an error: the answer is returned all the same, not kept,
        and a StoreNotice says so; a local results folder this call created is removed again."""
        folder = posixpath.dirname(rel)
        created = [d for d in (RESULTS_DIR, folder) if self.location.local and not self.location.exists(d)]
        try:
            self.location.write_parquet(rel, table, compression="zstd")
        except (OSError, StoreError) as exc:
            for d in reversed(created):  # a full disk keeps no empty results folder either
                with contextlib.suppress(OSError):
                    os.rmdir(self.location.path(d))
            _not_cached(self.location.join(folder), exc, "not cached")
            return None
        return self.location.path(rel)

    def _remove(self, rel: str) -> bool:
        """Delete a cache file; in a read-only store it stays (and is never served stale: keys name the data)."""
        try:
            self.location.delete(rel)
            return True
        except StoreError as exc:
            _not_cached(self.location.join(posixpath.dirname(rel)), exc, "left as they are")
            return False


def _not_cached(folder: str, exc: Exception, what: str) -> None:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
    warnings.warn(StoreNotice(f"answers {what}: cannot write {folder} ({reason}); results are shown all the same"),
                  stacklevel=3)

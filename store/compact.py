"""Merge the flushes of a run into one file per partition, safely while readers read.

Why: an ingest commits every minute and every 256 MiB, so a long run leaves hundreds of small files in each
partition, and every read opens all of them (a sampled read takes at least one row group of each).
Compaction rewrites the visible flushes of one run as a single new flush of that run.

Protocol (store/inventory.py says how readers see each step):

1. delete the run's uncommitted files (a flush or compaction killed before its marker), as a writer does;
2. write each partition's merged file under the run's next flush number: invisible, it has no marker yet;
3. write that flush's marker: the union of the merged markers' sample rows, the new files' list, and the
   names of the markers it replaces (``keygap.replaces``). Its atomic rename is the switch: before it
   readers see the old files only, after it the new ones only;
4. delete the replaced key files, then their markers.

A kill before step 3 leaves invisible files that step 1 of the rerun deletes; a kill after it leaves
hidden files that the rerun's step 4 deletes. Either way the rerun ends in the same bytes as an
uninterrupted compaction: the merge is deterministic (rows sorted by ``rand``, ties in flush order, the
writer's own Parquet options, marker rows in flush order). A resumed ingest of the run continues at the
next flush number and its end-of-run compaction merges the compacted flush with the new ones.

Only one process may write a run's files: the caller holds the (model, benchmark) lock (store/lock.py),
as the ingest that wrote the run does at its end and `keygap compact` does for the whole pair.
Memory stays bounded: partitions are merged in ``rand`` ranges of about CHUNK_BYTES, reading each input
file's row groups in order.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError
from .files import temp_path
from .inventory import MARKER_FILES_KEY, MARKER_REPLACES_KEY, PART_NAME, Inventory, KeyFile, Marker
from .schema import KEYS_SCHEMA, SAMPLES_DIR, SAMPLES_SCHEMA
from .writer import parquet_options, remove_uncommitted, row_group_rows

#: bytes of keys merged per step (bounds memory, together with one row group per input file)
CHUNK_BYTES = 64 << 20

Progress = Callable[[int, int, str], None]  # (bytes done, bytes in all, what is happening)


@dataclass
class Compaction:
    """What compacting one run did."""

    run_id: str
    flushes: int = 0  # visible flushes merged (0: nothing to merge)
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes: int = 0
    deleted: list[str] = field(default_factory=list)  # relative paths of the files removed

    def line(self) -> str:
        if not self.flushes:
            return f"{self.run_id}: already compact"
        return (f"{self.run_id}: {self.flushes} flushes, {self.files_before} files -> {self.files_after} "
                f"({self.rows:,} keys, {self.bytes / 2**20:.1f} MiB)")


def runs_to_compact(inventory: Inventory) -> list[str]:
    """Runs with more than one visible flush, or with files a killed compaction left to delete."""
    visible: dict[str, int] = {}
    for mk in inventory.markers:
        visible[mk.run_id] = visible.get(mk.run_id, 0) + 1
    leftovers = {_run_of(p) for p in inventory.replaced + inventory.hidden}
    return sorted({run for run, count in visible.items() if count > 1} | (leftovers - {None}))


def compact_run(root: str | os.PathLike, run_id: str, *, progress: Progress | None = None,
                compression: str = "zstd", compression_level: int | None = 1) -> Compaction:
    """Merge every visible flush of ``run_id`` into one (see the module docstring). The caller holds the
    lock of the run's (model, benchmark)."""
    from .reader import KeyStore  # the reader's filesystem handling, for the marker rows

    root = Path(root)
    next_flush = remove_uncommitted(root, run_id)
    ks = KeyStore(str(root))
    inv = ks.inventory
    report = Compaction(run_id)
    markers = [mk for mk in inv.markers if mk.run_id == run_id]
    if len(markers) > 1:
        flushes = {mk.flush for mk in markers}
        files = [f for f in inv.all_files() if f.run_id == run_id and f.flush in flushes]
        report.flushes, report.files_before = len(markers), len(files)
        name = f"part-{run_id}-{next_flush:05d}.parquet"
        listed = _write_merged(root, files, name, progress, parquet_options(compression, compression_level))
        report.files_after = len(listed)
        report.rows = sum(e["rows"] for e in listed.values())
        report.bytes = sum(e["bytes"] for e in listed.values())
        if report.rows != sum(f.rows for f in files):
            raise StoreError(f"compacting {run_id} produced {report.rows} rows from {sum(f.rows for f in files)}: "
                             "nothing was replaced; report this as a bug")
        _write_marker(root, ks, markers, listed, name, parquet_options(compression, compression_level))
        doomed = [f.rel for f in files] + [posixpath.relpath(mk.path, ks.root) for mk in markers]
    else:
        doomed = []
    # Step 4, also finishing what a killed compaction of this run left: hidden key files, then markers.
    doomed += [rel for rel in inv.hidden if _run_of(rel) == run_id]
    doomed += [rel for rel in inv.replaced if _run_of(rel) == run_id]
    key_files = [rel for rel in dict.fromkeys(doomed) if not rel.startswith(SAMPLES_DIR + "/")]
    marker_files = [rel for rel in dict.fromkeys(doomed) if rel.startswith(SAMPLES_DIR + "/")]
    for rel in key_files + marker_files:
        (root / rel).unlink(missing_ok=True)
        report.deleted.append(rel)
    return report


def _run_of(rel: str) -> str | None:
    m = PART_NAME.match(posixpath.basename(rel))
    return m["run"] if m else None


def _write_merged(root: Path, files: list[KeyFile], name: str, progress: Progress | None, options: dict) -> dict:
    """Step 2: one merged file per partition; returns the marker's file list {rel: rows, bytes, dim, dtype}."""
    by_partition: dict[tuple, list[KeyFile]] = {}
    for f in sorted(files, key=lambda f: (f.partition, f.flush)):
        by_partition.setdefault(f.partition, []).append(f)
    total = sum(f.size for f in files)
    done = 0
    listed: dict[str, dict] = {}
    for partition, inputs in by_partition.items():
        out = Path(inputs[0].path).with_name(name)
        if progress is not None:
            progress(done, total, f"merging {len(inputs)} files of {'/'.join(map(str, partition))}")
        rows = _merge(inputs, out, options)
        dims = {f.dim for f in inputs}
        dtypes = {f.dtype for f in inputs}
        if len(dims) > 1 or len(dtypes) > 1:
            raise StoreError(f"the files of {out.parent} mix key widths {sorted(dims)} or dtypes {sorted(dtypes)}: "
                             "not compacted; re-ingest that partition")
        listed[out.relative_to(root).as_posix()] = {
            "rows": rows, "bytes": out.stat().st_size, "dim": dims.pop(), "dtype": dtypes.pop(),
        }
        done += sum(f.size for f in inputs)
    if progress is not None:
        progress(total, total, "merged")
    return listed


def _merge(inputs: list[KeyFile], out: Path, options: dict) -> int:
    """Merge files each sorted by rand into ``out`` (written under a temp name, then renamed); returns rows."""
    pfs = [pq.ParquetFile(f.path) for f in inputs]
    rows = sum(pf.metadata.num_rows for pf in pfs)
    row_bytes = max(1, max(_row_bytes(pf) for pf in pfs))
    per_group = row_group_rows(row_bytes)
    chunk_rows = max(per_group, (CHUNK_BYTES // row_bytes) // per_group * per_group)
    steps = max(1, math.ceil(rows / chunk_rows))
    cursors = [_Cursor(pf) for pf in pfs]
    tmp = temp_path(out)
    written = 0
    try:
        with pq.ParquetWriter(tmp, KEYS_SCHEMA, **options) as writer:
            carry = KEYS_SCHEMA.empty_table()
            for step in range(1, steps + 1):
                bound = step / steps if step < steps else math.inf
                table = pa.concat_tables([carry] + [c.take_below(bound) for c in cursors])
                table = table.take(pa.array(np.argsort(table["rand"].to_numpy(), kind="stable")))
                full = table.num_rows if step == steps else table.num_rows // per_group * per_group
                if full:
                    writer.write_table(table.slice(0, full), row_group_size=per_group)
                    written += full
                carry = table.slice(full)
        if written != rows:
            raise StoreError(f"merging into {out} wrote {written} of {rows} rows: not compacted; report this as a bug")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _row_bytes(pf: pq.ParquetFile) -> int:
    md = pf.metadata
    return md.row_group(0).total_byte_size // max(1, md.row_group(0).num_rows) if md.num_row_groups else 1


class _Cursor:
    """Reads one rand-sorted file in order, handing out the rows below a rising bound."""

    def __init__(self, pf: pq.ParquetFile):
        self.pf = pf
        self.next_group = 0
        self.pending = KEYS_SCHEMA.empty_table()

    def take_below(self, bound: float) -> pa.Table:
        out = []
        while True:
            if self.pending.num_rows == 0:
                if self.next_group >= self.pf.metadata.num_row_groups:
                    break
                self.pending = self.pf.read_row_group(self.next_group, columns=KEYS_SCHEMA.names)
                self.next_group += 1
            k = int(np.searchsorted(self.pending["rand"].to_numpy(), bound, side="left"))
            out.append(self.pending.slice(0, k))
            self.pending = self.pending.slice(k)
            if self.pending.num_rows:
                break
        return pa.concat_tables(out) if out else KEYS_SCHEMA.empty_table()


def _write_marker(root: Path, ks, markers: list[Marker], listed: dict, name: str, options: dict) -> None:
    """Step 3: the marker that commits the merged files and replaces the merged flushes (atomic rename)."""
    tables = [pq.read_table(ks.fs.open_input_file(mk.path)) for mk in sorted(markers, key=lambda m: m.flush)]
    samples = pa.concat_tables([t.select(SAMPLES_SCHEMA.names).cast(SAMPLES_SCHEMA) for t in tables])
    samples = samples.replace_schema_metadata({
        MARKER_FILES_KEY: json.dumps(listed, sort_keys=True).encode(),
        MARKER_REPLACES_KEY: json.dumps(sorted(posixpath.basename(mk.path) for mk in markers)).encode(),
    })
    path = root / SAMPLES_DIR / name
    tmp = temp_path(path)
    try:
        pq.write_table(samples, tmp, **options)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

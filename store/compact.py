"""Merge the files of a run into one per partition, safely while readers read.

Why: an ingest commits every minute and every 256 MiB, so a long run leaves hundreds of small files in each
partition, and every read opens all of them (a sampled read takes at least one row group of each).
Compaction rewrites every partition of one run as a single file, in each of the three trees (keys, queries,
attention): a flush commits files in all three, so a marker it retires hides them all.

Protocol (store/inventory.py says how readers see each step). The partitions of the run are split into
groups of about GROUP_BYTES, each committed on its own, so the extra disk a compaction needs is one group,
not the run. The plan (the groups, the first new flush number, the markers to retire) is written into
every group's marker, so a rerun continues exactly where a killed compaction stopped.

1. delete the run's uncommitted files (a flush or group killed before its marker), as a writer does, and
   finish the deletions (step 4) of a killed compaction;
2. per group, write each partition's merged file under the group's flush number: invisible, no marker yet;
3. write the group's marker: it lists the new files and replaces (``keygap.replaces``) the files they
   merge. Its atomic rename is the switch: before it readers see the old files, after it the new ones.
   The last group's marker also carries every sample row of the run and replaces the old markers;
4. delete what the marker replaced: key files after each group, old markers after the last.

A kill before a group's marker leaves invisible files that step 1 of the rerun deletes; a kill after it
leaves hidden files that the rerun deletes. Either way the rerun ends in the same bytes as an uninterrupted
compaction: the merge is deterministic (rows sorted by ``rand``, ties in flush order, the writer's own
Parquet options, sample rows in flush order) and the groups come from the recorded plan. A resumed ingest
continues at the next flush number; its end-of-run compaction merges the compacted files with the new.

Only one process may write a run's files: the caller holds the (model, benchmark) lock (store/lock.py),
as the ingest that wrote the run does at its end and `keygap compact` does for the whole pair. Memory
stays bounded: a partition is merged in ``rand`` ranges of about CHUNK_BYTES, reading each input file's
row groups in order.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError
from .files import temp_path
from .inventory import MARKER_FILES_KEY, MARKER_REPLACES_KEY, PART_NAME, Inventory, KeyFile, Marker
from .location import open_location
from .lock import StoreLock
from .schema import (
    ATTENTION_DIR,
    ATTENTION_SCHEMA,
    KEYS_DIR,
    KEYS_SCHEMA,
    QUERIES_DIR,
    QUERIES_SCHEMA,
    SAMPLES_DIR,
    SAMPLES_SCHEMA,
)
from .writer import ROW_GROUP_BYTES, parquet_options, remove_uncommitted, row_group_rows, segments_of

#: bytes of keys merged per step (bounds memory, together with one row group per input file)
CHUNK_BYTES = 64 << 20
#: bytes of input per group of partitions committed together: the extra disk a compaction needs
GROUP_BYTES = 4 << 30
#: marker metadata: JSON {"base": first flush, "groups": [[partition folder, ...], ...], "markers": [names]}
PLAN_KEY = b"keygap.compaction"

if TYPE_CHECKING:
    from .reader import KeyStore

Progress = Callable[[int, int, str], None]  # (bytes done, bytes in all, what is happening)


@dataclass
class Compaction:
    """What compacting one run did."""

    run_id: str
    groups: int = 0  # groups of partitions committed (0: the run was already compact)
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes: int = 0
    deleted: list[str] = field(default_factory=list)  # relative paths of the files removed

    def line(self) -> str:
        if not self.groups:
            leftovers = f" ({len(self.deleted)} leftover files removed)" if self.deleted else ""
            return f"{self.run_id}: already compact{leftovers}"
        return (f"{self.run_id}: {self.files_before} files -> {self.files_after} in {self.groups} steps "
                f"({self.rows:,} keys, {self.bytes / 2**20:.1f} MiB)")


@dataclass(frozen=True)
class _Plan:
    base: int
    groups: list[list[str]]  # partition folders relative to the store, per group
    markers: list[str]  # names of the markers the last group retires

    def to_json(self) -> bytes:
        return json.dumps({"base": self.base, "groups": self.groups, "markers": self.markers}, sort_keys=True).encode()


def runs_to_compact(inventory: Inventory) -> list[str]:
    """Runs with a partition of more than one file, or with files a killed compaction left to delete."""
    counts: dict[tuple[str, str], int] = {}
    for f in inventory.data_files():
        where = (f.run_id, posixpath.dirname(f.rel))
        counts[where] = counts.get(where, 0) + 1
    busy = {run for (run, _), n in counts.items() if n > 1}
    leftovers = {run for p in inventory.replaced + inventory.hidden if (run := _run_of(p)) is not None}
    return sorted(busy | leftovers)


def compact_store(root: str | os.PathLike, model: str | None = None, benchmark: str | None = None, *,
                  wait: bool = False, progress: Progress | None = None,
                  on_wait: Callable[[str], None] | None = None) -> tuple[list[Compaction], list[str]]:
    """`keygap compact`: every run that needs it, one (model, benchmark) at a time under that pair's lock.

    Returns the runs' reports and, per pair left alone because another process writes it (without
    ``wait``), one line saying so."""
    from .lock import LockHeld, acquire
    from .reader import KeyStore

    skipped: list[str] = []
    reports: list[Compaction] = []
    for pair in sorted(_pairs_to_compact(KeyStore(str(root)).inventory)):
        if (model is not None and pair[0] != model) or (benchmark is not None and pair[1] != benchmark):
            continue
        try:
            lock = acquire(root, *pair, wait=None if wait else 0, on_wait=on_wait)
        except LockHeld as exc:
            skipped.append(str(exc))
            continue
        with lock:  # under the lock, look again: an ingest may have finished since
            for run in sorted(_pairs_to_compact(KeyStore(str(root)).inventory).get(pair, ())):
                reports.append(compact_run(root, run, progress=progress, lock=lock))
    return reports, skipped


def _pairs_to_compact(inventory: Inventory) -> dict[tuple[str, str], set[str]]:
    """{(model, benchmark): runs} of the runs that need compacting (runs_to_compact)."""
    wanted = set(runs_to_compact(inventory))
    out: dict[tuple[str, str], set[str]] = {}
    for f in inventory.data_files():
        if f.run_id in wanted:
            out.setdefault(f.partition[:2], set()).add(f.run_id)
    for rel in inventory.hidden:
        parts = dict(p.split("=", 1) for p in rel.split("/")[1:-1] if "=" in p)
        run = _run_of(rel)
        if run is not None and run in wanted and {"model", "benchmark"} <= set(parts):
            out.setdefault((parts["model"], parts["benchmark"]), set()).add(run)
    return out


def compact_run(root: str | os.PathLike, run_id: str, *, progress: Progress | None = None,
                lock: StoreLock | None = None,
                compression: str = "zstd", compression_level: int | None = 1) -> Compaction:
    """Merge the files of ``run_id`` into one per partition (see the module docstring). The caller holds the
    lock of the run's (model, benchmark) and passes it as ``lock``, checked before every switch."""
    from .location import is_remote
    from .reader import KeyStore  # the reader's filesystem and marker handling

    if is_remote(root):  # renames and hard links: a folder's tools (an object store has neither)
        raise StoreError(f"compaction works on a local or shared folder, not {root}: a store on object storage "
                         "keeps one file per flush")
    root = Path(root)
    options = {"compression": compression, "compression_level": compression_level}
    next_flush = remove_uncommitted(root, run_id)
    ks = KeyStore(str(root))
    inv = ks.inventory
    report = Compaction(run_id)
    _delete(root, [rel for rel in inv.hidden if _run_of(rel) == run_id], report)
    _delete(root, [rel for rel in inv.replaced if _run_of(rel) == run_id], report)
    own = [mk for mk in inv.markers if mk.run_id == run_id]
    files = [f for f in inv.data_files() if f.run_id == run_id]
    by_dir: dict[str, list[KeyFile]] = {}
    for f in sorted(files, key=lambda f: (f.rel, f.flush)):
        by_dir.setdefault(posixpath.dirname(f.rel), []).append(f)
    plan = _unfinished_plan(ks, own)
    if plan is None:
        if all(len(v) <= 1 for v in by_dir.values()):
            return report
        plan = _Plan(next_flush, _groups(by_dir), sorted(posixpath.basename(mk.path) for mk in own))
    done_markers = {posixpath.basename(mk.path) for mk in own}
    total = sum(f.size for group in plan.groups for d in group for f in by_dir.get(d, []))
    done = 0
    for g, group in enumerate(plan.groups):
        name = f"part-{run_id}-{plan.base + g:05d}.parquet"
        inputs = [f for d in group for f in by_dir.get(d, [])]
        if name in done_markers:
            continue  # committed before a kill; its replaced files are gone (deleted above)
        if progress is not None:
            progress(done, total, f"merging {len(inputs)} files into {len(group)} partitions")
        listed = {}
        for d in group:
            if by_dir.get(d):
                out = root / d / name
                listed[out.relative_to(root).as_posix()] = _merge(by_dir[d], out, options)
        last = g == len(plan.groups) - 1
        rows = _rows_of(ks, plan.markers) if last else SAMPLES_SCHEMA.empty_table()
        replaces = sorted(f.rel for f in inputs) + (plan.markers if last else [])
        if lock is not None:
            lock.verify()  # taken over (a stale-lock breaker): stop before the switch, the rerun goes on
        _write_marker(root, name, rows, listed, replaces, plan, options)
        _delete(root, [f.rel for f in inputs], report)
        report.groups += 1
        report.files_before += len(inputs)
        report.files_after += len(listed)
        report.rows += sum(e["rows"] for e in listed.values())
        report.bytes += sum(e["bytes"] for e in listed.values())
        done += sum(f.size for f in inputs)
    _delete(root, [posixpath.join(SAMPLES_DIR, m) for m in plan.markers], report)
    if progress is not None:
        progress(total, total, "compacted")
    return report


def _groups(by_dir: dict[str, list[KeyFile]]) -> list[list[str]]:
    """Partitions in folder order, cut into groups of about GROUP_BYTES of input."""
    groups: list[list[str]] = [[]]
    size = 0
    for d, inputs in sorted(by_dir.items()):
        grow = sum(f.size for f in inputs)
        if groups[-1] and size + grow > GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(d)
        size += grow
    return groups


def _unfinished_plan(ks: KeyStore, own: list[Marker]) -> _Plan | None:
    """The plan of a compaction of this run that a kill stopped (its last group's marker is missing)."""
    names = {posixpath.basename(mk.path) for mk in own}
    for mk in sorted(own, key=lambda m: m.flush, reverse=True):
        meta = pq.read_metadata(ks.fs.open_input_file(mk.path)).metadata or {}
        if PLAN_KEY in meta:
            raw = json.loads(meta[PLAN_KEY])
            plan = _Plan(int(raw["base"]), [list(g) for g in raw["groups"]], list(raw["markers"]))
            last = f"part-{mk.run_id}-{plan.base + len(plan.groups) - 1:05d}.parquet"
            return None if last in names else plan
    return None


def _rows_of(ks: KeyStore, marker_names: list[str]) -> pa.Table:
    """Sample rows of the markers the compaction retires, in flush order."""
    paths = [posixpath.join(ks.root, SAMPLES_DIR, name) for name in sorted(marker_names)]
    tables = [pq.read_table(ks.fs.open_input_file(p)).select(SAMPLES_SCHEMA.names).cast(SAMPLES_SCHEMA) for p in paths]
    return pa.concat_tables(tables) if tables else SAMPLES_SCHEMA.empty_table()


def _merge(inputs: list[KeyFile], out: Path, options: dict) -> dict:
    """Merge one partition's files into ``out`` (temp name, then rename); returns the marker's entry. Key and
    query files are each sorted by rand and stay so; attention files are concatenated in flush order."""
    tree = inputs[0].rel.split("/", 1)[0]
    dims, dtypes = {f.dim for f in inputs}, {f.dtype for f in inputs}
    if len(dims) > 1 or len(dtypes) > 1:
        raise StoreError(f"the files of {out.parent} mix key widths {sorted(dims)} or dtypes {sorted(dtypes)}: "
                         "not compacted; re-ingest that partition")
    rows = sum(f.rows for f in inputs)
    tmp = temp_path(out)
    try:
        if len(inputs) == 1:
            _copy(Path(inputs[0].path), tmp)
        elif tree == ATTENTION_DIR:
            _write_concatenated(inputs, tmp, options)
        else:
            _write_merged(inputs, tmp, _SCHEMAS[tree], options)
        written = pq.read_metadata(tmp).num_rows
        if written != rows:
            raise StoreError(f"merging into {out} wrote {written} of {rows} rows: not compacted; report this as a bug")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = out.stat()
    entry = {"rows": rows, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if tree == ATTENTION_DIR:
        return entry
    if all(f.segments is not None for f in inputs):
        segments = sorted({s for f in inputs for s in f.segments or ()})
    else:  # a file from before markers named segments: ask the merged file once
        segments = segments_of(pq.read_table(out, columns=["segment"]))
    return entry | {"dim": dims.pop(), "dtype": dtypes.pop(), "segments": segments}


def _copy(src: Path, dst: Path) -> None:
    """A partition with one file: a hard link (no bytes copied) where the file system has them."""
    try:
        os.link(src, dst)
    except OSError:
        with open(src, "rb") as a, open(dst, "wb") as b:
            while chunk := a.read(16 << 20):
                b.write(chunk)


def _write_concatenated(inputs: list[KeyFile], path: Path, options: dict) -> None:
    """Attention rows (no random order to keep): the files' row groups one after another, in flush order."""
    pfs = [pq.ParquetFile(f.path) for f in inputs]
    per_group = max(1, ROW_GROUP_BYTES // max(1, max(_row_bytes(pf) for pf in pfs)))
    schema = ATTENTION_SCHEMA
    with pq.ParquetWriter(path, schema, **parquet_options(schema.names, **options)) as writer:
        for pf in pfs:
            for g in range(pf.metadata.num_row_groups):
                writer.write_table(pf.read_row_group(g, columns=schema.names).cast(schema), row_group_size=per_group)


def _write_merged(inputs: list[KeyFile], path: Path, schema: pa.Schema, options: dict) -> None:
    pfs = [pq.ParquetFile(f.path) for f in inputs]
    rows = sum(pf.metadata.num_rows for pf in pfs)
    row_bytes = max(1, max(_row_bytes(pf) for pf in pfs))
    per_group = row_group_rows(row_bytes)
    chunk_rows = max(per_group, (CHUNK_BYTES // row_bytes) // per_group * per_group)
    steps = max(1, math.ceil(rows / chunk_rows))
    cursors = [_Cursor(pf, schema) for pf in pfs]
    with pq.ParquetWriter(path, schema, **parquet_options(schema.names, **options)) as writer:
        carry = schema.empty_table()
        for step in range(1, steps + 1):
            bound = step / steps if step < steps else math.inf
            table = pa.concat_tables([carry] + [c.take_below(bound) for c in cursors])
            table = table.take(pa.array(np.argsort(table["rand"].to_numpy(), kind="stable")))
            full = table.num_rows if step == steps else table.num_rows // per_group * per_group
            if full:
                writer.write_table(table.slice(0, full), row_group_size=per_group)
            carry = table.slice(full)


def _row_bytes(pf: pq.ParquetFile) -> int:
    md = pf.metadata
    return md.row_group(0).total_byte_size // max(1, md.row_group(0).num_rows) if md.num_row_groups else 1


class _Cursor:
    """Reads one rand-sorted file in order, handing out the rows below a rising bound."""

    def __init__(self, pf: pq.ParquetFile, schema: pa.Schema):
        self.pf = pf
        self.schema = schema
        self.next_group = 0
        self.pending = schema.empty_table()

    def take_below(self, bound: float) -> pa.Table:
        out = []
        while True:
            if self.pending.num_rows == 0:
                if self.next_group >= self.pf.metadata.num_row_groups:
                    break
                self.pending = self.pf.read_row_group(self.next_group, columns=self.schema.names)
                self.next_group += 1
            k = int(np.searchsorted(self.pending["rand"].to_numpy(), bound, side="left"))
            out.append(self.pending.slice(0, k))
            self.pending = self.pending.slice(k)
            if self.pending.num_rows:
                break
        return pa.concat_tables(out) if out else self.schema.empty_table()


def _write_marker(root: Path, name: str, rows: pa.Table, listed: dict, replaces: list[str], plan: _Plan,
                  options: dict) -> None:
    """Step 3: the marker that commits a group's merged files and replaces what they merge (atomic rename)."""
    rows = rows.replace_schema_metadata({
        MARKER_FILES_KEY: json.dumps(listed, sort_keys=True).encode(),
        MARKER_REPLACES_KEY: json.dumps(replaces).encode(),
        PLAN_KEY: plan.to_json(),
    })
    open_location(str(root)).write_parquet(posixpath.join(SAMPLES_DIR, name), rows,
                                           **parquet_options(rows.column_names, **options))


def _delete(root: Path, rels: list[str], report: Compaction) -> None:
    for rel in dict.fromkeys(rels):
        (root / rel).unlink(missing_ok=True)
        report.deleted.append(rel)


#: the columns of each tree's files, in the writer's order
_SCHEMAS = {KEYS_DIR: KEYS_SCHEMA, QUERIES_DIR: QUERIES_SCHEMA}


def _run_of(rel: str) -> str | None:
    m = PART_NAME.match(posixpath.basename(rel))
    return m["run"] if m else None

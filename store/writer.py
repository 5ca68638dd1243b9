"""Append labelled keys to a store without ever exposing a half-written file.

Imports pyarrow and numpy only: this runs on GPU servers that may have neither duckdb nor textual.

Protocol. ``add`` stages the keys of one batch; ``commit`` marks the batch's samples complete and moves its
keys to a per-partition buffer; buffers are flushed (sorted by the random key, each file written whole:
in a folder under a hidden temporary name, then renamed; on S3 made complete in memory, then uploaded in one
request under its final name, see store/location.py) when they grow past ``flush_bytes`` or on
``flush``/``close``. After the key files of a flush are in place, a samples file for the same flush is
written: it is the commit marker. Opening a writer for a run removes that run's key files that have no
marker (a crash between the two), so re-running the same command never duplicates rows. A run id must
therefore be stable across resumes. The same protocol holds in a folder and under an ``s3://`` prefix.
Only one process may write a (model, benchmark) at a time: the caller holds its lock (store/lock.py) and
passes it in, so a writer whose lock was taken over stops before its next flush.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import codec
from .errors import StoreError
from .inventory import MARKER_FILES_KEY, PART_NAME
from .location import Location, open_location
from .lock import StoreLock
from .schema import (
    ATTENTION_DIR,
    ATTENTION_SCHEMA,
    KEY_DTYPES,
    KEYS_DIR,
    KEYS_SCHEMA,
    MANIFEST,
    MODALITIES,
    QUERIES_DIR,
    QUERIES_SCHEMA,
    ROPE_KINDS,
    RUNS_DIR,
    SAMPLES_DIR,
    SAMPLES_SCHEMA,
    SCHEMA_VERSION,
    VECTOR_COLUMN,
    attention_dir,
    load_manifest,
    partition_dir,
    utc_now,
)

#: Rows per row group. A sample reads whole row groups (store/sampling.py), so a 500-key sample from one
#: file reads about 500 + ROW_GROUP_ROWS rows; smaller groups cost footer size (a 1M-row file at 512 rows
#: has a 1.6 MB footer). BENCHMARKS.md ("Scale") has the measurements behind the choice.
ROW_GROUP_ROWS = 512
#: ... and at most this many bytes, for very wide keys.
ROW_GROUP_BYTES = 8 << 20


def row_group_rows(row_bytes: int) -> int:
    """Rows per row group for rows of ``row_bytes`` bytes (see ROW_GROUP_ROWS)."""
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // max(1, int(row_bytes))))


@dataclass
class KeyBatch:
    """Keys of one (model, benchmark, layer, rope, modality) partition from one batch of samples."""

    model: str
    benchmark: str
    layer: int
    rope: str
    modality: str
    sample_id: np.ndarray
    position: np.ndarray
    token_id: np.ndarray
    segment: np.ndarray
    keys: np.ndarray
    dtype: str = "float16"
    image_index: np.ndarray | None = None
    rope_thw: np.ndarray | None = None  # [n, 3] t/h/w positions (Qwen M-RoPE); None -> position
    kind: str = "key"  # "key" (the keys tree) or "query" (the queries tree, same partitions and columns)

    def __len__(self) -> int:
        return len(self.position)

    @property
    def tree(self) -> str:
        return {"key": KEYS_DIR, "query": QUERIES_DIR}[self.kind]


@dataclass
class AttentionBatch:
    """Attention allocation rows of one (model, benchmark, layer) from one batch (ATTENTION_SCHEMA columns)."""

    model: str
    benchmark: str
    layer: int
    sample_id: np.ndarray
    head: np.ndarray
    query: np.ndarray
    n_queries: np.ndarray
    group: np.ndarray
    modality: np.ndarray
    keys: np.ndarray
    token_share: np.ndarray
    mass: np.ndarray

    tree = ATTENTION_DIR

    def __len__(self) -> int:
        return len(self.head)


@dataclass
class _Buffer:
    tables: list = field(default_factory=list)
    nbytes: int = 0


def init_store(root: str | os.PathLike | Location) -> Location:
    """Create an empty store (or check an existing one's schema version) in a folder or under an ``s3://``
    prefix, and return its Location."""
    loc = root if isinstance(root, Location) else open_location(root)
    where = loc.uri if not loc.local else loc.root
    if loc.local and os.path.exists(loc.root) and not os.path.isdir(loc.root):
        raise StoreError(f"--store {where} is a file, not a folder: give a folder (a new one is created)")
    # Hidden names are temporary files of a shard creating the same store at this instant; anything else
    # appears only after the manifest, so a second look at the manifest settles a concurrent creation.
    foreign = any(not name.startswith(".") for name in loc.children())
    try:
        raw = loc.read_bytes(MANIFEST)
    except FileNotFoundError:
        raw = None
    if raw is not None:
        load_manifest(lambda: raw, loc.join(MANIFEST))
        return loc
    if foreign:
        raise StoreError(f"{where} exists and is not a keygap store (no {MANIFEST}): choose an empty or new --store")
    try:
        # The manifest first, then the folders: a concurrent shard sees either nothing or a store.
        loc.write_bytes(
            MANIFEST,
            json.dumps({"schema_version": SCHEMA_VERSION, "created": utc_now()}).encode(),
        )
        for sub in (KEYS_DIR, SAMPLES_DIR, RUNS_DIR):
            loc.makedirs(sub)
    except OSError as exc:
        raise StoreError(f"cannot create the store {where} ({exc.strerror or exc}): choose a --store you can write "
                         "to, on a disk with free space") from None
    return loc


def write_run(root: str | os.PathLike | Location, manifest: dict) -> str:
    """Write (or rewrite) a run's manifest whole; ``manifest["run_id"]`` names the file. Returns its URI."""
    run_id = manifest.get("run_id")
    if not run_id:
        raise ValueError("a run manifest needs a run_id")
    loc = root if isinstance(root, Location) else open_location(root)
    rel = posixpath.join(RUNS_DIR, f"{run_id}.json")
    loc.write_bytes(rel, json.dumps(manifest, indent=1, default=str).encode())
    return loc.join(rel)


def read_run(root: str | os.PathLike | Location, run_id: str) -> dict | None:
    """A run's manifest, or None when there is none (or it is unreadable)."""
    loc = root if isinstance(root, Location) else open_location(root)
    try:
        data = json.loads(loc.read_bytes(posixpath.join(RUNS_DIR, f"{run_id}.json")))
    except (OSError, ValueError, StoreError):
        return None
    return data if isinstance(data, dict) else None


def row_rand(sample_id: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) sort key fixed by (sample id, position).

    Being a hash rather than a draw, it is the same across layers (a LIMIT picks the same tokens in every
    layer), across batch sizes, resumes and shards (so sharded and unsharded runs store identical rows).
    """
    ids = np.asarray(sample_id, dtype=object)
    uniq, inverse = np.unique(ids.astype(str), return_inverse=True)
    seeds = np.array(
        [int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little") for u in uniq],
        dtype=np.uint64,
    )
    with np.errstate(over="ignore"):
        x = seeds[inverse] ^ (np.asarray(position, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        # splitmix64 finaliser
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def segments_of(table: pa.Table) -> list[str]:
    """The prompt segments a key file holds, for its marker entry (the TUI's picker reads them from there)."""
    return sorted(str(v) for v in pc.unique(table["segment"].cast(pa.string())).to_pylist() if v is not None)


#: Small columns dictionary-encoded; statistics per row group where reads filter (``rand`` for sampled reads,
#: store/sampling.py).
_DICTIONARY_COLUMNS = ("sample_id", "segment", "run_id", "dtype", "query", "group", "modality")
_STATISTICS_COLUMNS = ("rand", "position", "sample_id", "head")


def parquet_options(columns: list[str], compression: str = "zstd", compression_level: int | None = 1) -> dict:
    """How every key, query, attention and marker file with ``columns`` is written (the writer's and
    compaction's files must not drift apart)."""
    return {
        "compression": compression,
        "compression_level": compression_level,
        "use_dictionary": [c for c in _DICTIONARY_COLUMNS if c in columns],
        "write_statistics": [c for c in _STATISTICS_COLUMNS if c in columns],
    }


def remove_uncommitted(store: str | os.PathLike | Location, run_id: str) -> int:
    """Delete a run's files that no marker commits (a flush or compaction killed before its marker) and, in a
    folder, its temporary files; return the run's next flush number. Only the holder of the run's lock may
    call this."""
    loc = store if isinstance(store, Location) else open_location(store)
    mine = f"part-{run_id}-"
    committed: set[int] = set()
    for info in loc.list(SAMPLES_DIR):
        m = PART_NAME.match(info.base_name)
        if m and m["run"] == run_id:
            committed.add(int(m["flush"]))
    trees = [info for tree in (KEYS_DIR, QUERIES_DIR, ATTENTION_DIR) for info in loc.list(tree, recursive=True)]
    for info in trees + loc.list(SAMPLES_DIR):
        name = info.base_name
        m = PART_NAME.match(name)
        if m and m["run"] == run_id:
            if int(m["flush"]) not in committed:
                loc.delete(loc.rel(info.path))
        elif name.startswith("." + mine) and ".tmp" in name:
            loc.delete(loc.rel(info.path))
    return max(committed, default=-1) + 1


class KeyWriter:
    """Buffered, crash-safe writer of one run's keys (see the module docstring for the protocol)."""

    def __init__(
        self,
        root: str | os.PathLike | Location,
        run_id: str,
        *,
        flush_bytes: int = 256 << 20,
        compression: str = "zstd",
        compression_level: int | None = 1,
        lock: StoreLock | None = None,
    ):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id or ""):
            raise ValueError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
        self.location = init_store(root)
        self.root = self.location.uri  # what messages name
        self.run_id = run_id
        self.flush_bytes = flush_bytes
        self.compression = compression
        self.compression_level = compression_level
        self.lock = lock
        self._staged: list[tuple[tuple, pa.Table]] = []
        self._buffers: dict[tuple, _Buffer] = {}
        self._samples: list[dict] = []
        self._buffered = 0
        self.rows_written = 0
        self.files_written = 0
        self._flush_no = self._recover()

    # -- recovery ---------------------------------------------------------------------------------------
    def _recover(self) -> int:
        """Delete this run's uncommitted files (and, in a folder, its temporary files); return the next flush
        number."""
        return remove_uncommitted(self.location, self.run_id)

    # -- public API -------------------------------------------------------------------------------------
    def add(self, batch: KeyBatch | AttentionBatch) -> None:
        """Stage one partition's keys (queries, attention rows); durable after ``commit`` and the next flush."""
        key: tuple[str | int, ...]
        if isinstance(batch, AttentionBatch):
            table = self._attention_table(batch)
            key = (ATTENTION_DIR, batch.model, batch.benchmark, int(batch.layer))
        else:
            table = self._to_table(batch)
            key = (batch.tree, batch.model, batch.benchmark, int(batch.layer), batch.rope, batch.modality)
        self._staged.append((key, table))

    def commit(self, samples_rows: list[dict]) -> None:
        """Mark the staged keys' samples complete; rows are dicts over SAMPLES_SCHEMA's columns."""
        for key, table in self._staged:
            buf = self._buffers.setdefault(key, _Buffer())
            buf.tables.append(table)
            buf.nbytes += table.nbytes
            self._buffered += table.nbytes
        self._staged.clear()
        for row in samples_rows:
            self._samples.append({name: row.get(name) for name in SAMPLES_SCHEMA.names} | {"run_id": self.run_id})
        if self._buffered >= self.flush_bytes:
            self.flush()

    def discard_staged(self) -> int:
        """Forget keys added since the last commit (an interrupted batch); returns the rows dropped."""
        n = sum(t.num_rows for _, t in self._staged)
        self._staged.clear()
        return n

    def flush(self) -> None:
        """Write every buffered partition, then the samples marker of this flush."""
        if not self._buffers and not self._samples:
            return
        if self.lock is not None:
            self.lock.verify()
        flush_no = self._flush_no
        name = f"part-{self.run_id}-{flush_no:05d}.parquet"
        listed: dict[str, dict] = {}
        try:
            self._write_flush(name, listed)
        except BaseException:
            # a failed flush (a full disk) leaves no orphan behind: its key files go, the buffers stay
            for rel in listed:
                self.location.delete(rel)
            raise
        # counted only now: rows of a flush whose marker never got written are not the store's
        self.rows_written += sum(entry["rows"] for rel, entry in listed.items() if rel.startswith(f"{KEYS_DIR}/"))
        self.files_written += len(listed)
        self._buffers.clear()
        self._samples.clear()
        self._buffered = 0
        self._flush_no += 1

    def _write_flush(self, name: str, listed: dict[str, dict]) -> None:
        """The key (query, attention) files of one flush, then its marker; ``listed`` gains each file once it
        is in place."""
        for (tree, *partition), buf in self._buffers.items():
            table = pa.concat_tables(buf.tables)
            row_bytes = max(1, table.nbytes // max(1, table.num_rows))
            if tree == ATTENTION_DIR:
                rel = (attention_dir(Path(), *partition) / name).as_posix()
                size = self._write_parquet(table, rel, row_group_size=max(1, ROW_GROUP_BYTES // row_bytes))
                listed[rel] = {"rows": table.num_rows, "bytes": size} | self._mtime(rel)
                continue
            order = np.argsort(table.column("rand").to_numpy(), kind="stable")
            table = table.take(pa.array(order))
            model, bench, layer, rope, modality = partition
            rel = (partition_dir(Path(), model, bench, layer, rope, modality, tree=tree) / name).as_posix()
            size = self._write_parquet(table, rel, row_group_size=row_group_rows(row_bytes))
            dtype = str(table["dtype"][0]) if table.num_rows else "float16"
            vector = VECTOR_COLUMN[tree]
            dim = (len(table[vector][0].as_py()) // KEY_DTYPES[dtype]) if table.num_rows else 0
            listed[rel] = {"rows": table.num_rows, "bytes": size, "dim": dim, "dtype": dtype,
                           "segments": segments_of(table)} | self._mtime(rel)
        # The marker lists the files it commits, so readers learn a store's content without opening them.
        samples = pa.Table.from_pylist(self._samples, schema=SAMPLES_SCHEMA).replace_schema_metadata(
            {MARKER_FILES_KEY: json.dumps(listed, sort_keys=True).encode()}
        )
        self._write_parquet(samples, posixpath.join(SAMPLES_DIR, name))

    def close(self) -> None:
        """Flush what was committed; drop what was only staged (an unfinished batch)."""
        self.discard_staged()
        self.flush()

    def __enter__(self) -> KeyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------------
    def _to_table(self, b: KeyBatch) -> pa.Table:
        if b.kind not in ("key", "query"):
            raise ValueError(f"kind must be key or query, got {b.kind!r}")
        if b.rope not in ROPE_KINDS:
            raise ValueError(f"rope must be one of {ROPE_KINDS}, got {b.rope!r}")
        if b.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {b.modality!r}")
        if b.dtype not in KEY_DTYPES:
            raise ValueError(f"dtype must be one of {tuple(KEY_DTYPES)}, got {b.dtype!r}")
        for part in (b.model, b.benchmark):
            if not re.fullmatch(r"[A-Za-z0-9._-]+", str(part)):
                raise ValueError(f"model/benchmark label {part!r} must be partition-safe (use schema.model_label)")
        n = len(b.position)
        if b.keys.shape[0] != n:
            raise ValueError(f"{b.keys.shape[0]} key vectors for {n} positions")
        for name in ("sample_id", "token_id", "segment"):
            if len(getattr(b, name)) != n:
                raise ValueError(f"column {name} has {len(getattr(b, name))} values for {n} keys")
        position = np.asarray(b.position, dtype=np.int32)
        image_index = np.full(n, -1, np.int16) if b.image_index is None else np.asarray(b.image_index, np.int16)
        thw = np.repeat(position[:, None], 3, axis=1) if b.rope_thw is None else np.asarray(b.rope_thw, np.int32)
        sample_id = np.asarray(b.sample_id).astype(str)
        return pa.Table.from_arrays(
            [
                pa.array(sample_id).dictionary_encode(),
                pa.array(position),
                pa.array(np.asarray(b.token_id, dtype=np.int32)),
                pa.array(np.asarray(b.segment).astype(str)).dictionary_encode(),
                pa.array(image_index),
                pa.array(thw[:, 0]),
                pa.array(thw[:, 1]),
                pa.array(thw[:, 2]),
                pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [self.run_id]),
                pa.array(row_rand(sample_id, position)),
                pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [b.dtype]),
                codec.to_arrow(b.keys, b.dtype),
            ],
            schema=KEYS_SCHEMA if b.kind == "key" else QUERIES_SCHEMA,
        )

    def _attention_table(self, b: AttentionBatch) -> pa.Table:
        n = len(b.head)
        for name in ("sample_id", "query", "n_queries", "group", "modality", "keys", "token_share", "mass"):
            if len(getattr(b, name)) != n:
                raise ValueError(f"attention column {name} has {len(getattr(b, name))} values for {n} rows")
        return pa.Table.from_arrays(
            [
                pa.array(np.asarray(b.sample_id).astype(str)).dictionary_encode(),
                pa.array(np.asarray(b.head, dtype=np.int16)),
                pa.array(np.asarray(b.query).astype(str)).dictionary_encode(),
                pa.array(np.asarray(b.n_queries, dtype=np.int32)),
                pa.array(np.asarray(b.group).astype(str)).dictionary_encode(),
                pa.array(np.asarray(b.modality).astype(str)).dictionary_encode(),
                pa.array(np.asarray(b.keys, dtype=np.float64)),
                pa.array(np.asarray(b.token_share, dtype=np.float64)),
                pa.array(np.asarray(b.mass, dtype=np.float64)),
                pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [self.run_id]),
            ],
            schema=ATTENTION_SCHEMA,
        )

    def _mtime(self, rel: str) -> dict:
        """A local file's mtime for its marker entry; an object is never rewritten in place: its size is identity
        enough."""
        return {"mtime_ns": self.location.info(rel).mtime_ns} if self.location.local else {}

    def _write_parquet(self, table: pa.Table, rel: str, row_group_size: int | None = None) -> int:
        """One whole key or marker file at ``rel`` (store/location.py); returns its size in bytes."""
        return self.location.write_parquet(rel, table, row_group_size=row_group_size,
                                           **parquet_options(table.column_names, self.compression,
                                                             self.compression_level))

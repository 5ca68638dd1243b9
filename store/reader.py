"""Read a store: what it holds, and slices of keys as float32 numpy, touching only the files needed.

pyarrow only (no duckdb), so analysis code and GPU servers can read a store without a SQL engine. Paths go
through pyarrow's filesystem layer, so an ``s3://`` or ``gs://`` URI works where pyarrow has that support.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import codec
from .errors import StoreError, first_line
from .inventory import Inventory, KeyFile, marker_listing, scan
from .location import open_location
from .sampling import RAND, FileIndex, choose
from .schema import (
    ATTENTION_SCHEMA,
    KEYS_DIR,
    MANIFEST,
    PARTITIONS,
    QUERIES_DIR,
    RUNS_DIR,
    SAMPLES_SCHEMA,
    VECTOR_COLUMN,
    load_manifest,
)

#: what ``load`` can read: stored keys, or stored queries (`keygap ingest --queries`)
VECTOR_KINDS = {"key": KEYS_DIR, "query": QUERIES_DIR}

_T = TypeVar("_T")
_LABEL_COLUMNS = ["sample_id", "position", "token_id", "segment", "image_index"]
Filter = str | Iterable[str] | None  # segments or sample ids a read keeps (None: all)
_FOOTER_CACHE = 4096  # parsed footers kept per KeyStore (a 1M-row file's is ~1.6 MB)


@dataclass
class KeySlice:
    """Keys of one slice, row-aligned with their labels; rows are in the store's random order."""

    x: np.ndarray  # float32 [n, dim]
    sample_id: np.ndarray  # object [n]
    position: np.ndarray  # int32 [n]
    token_id: np.ndarray  # int32 [n]
    segment: np.ndarray  # object [n]
    image_index: np.ndarray  # int16 [n]
    total: int  # rows that matched before sampling
    files: tuple = ()  # (path, size, mtime_ns) of every file read: the identity of the data

    def __len__(self) -> int:
        return len(self.position)


class KeyStore:
    """A keygap store opened for reading (``KeyStore("./keygap-store")``)."""

    def __init__(self, uri: str | os.PathLike[str]):
        self.uri = str(uri)
        self.location = open_location(self.uri)
        self.fs, self.root = self.location.fs, self.location.root
        manifest = self._path(MANIFEST)
        info = self.location.info(MANIFEST)
        if info.type == pafs.FileType.NotFound:
            root_type = self.location.info("").type
            if root_type == pafs.FileType.NotFound:
                raise StoreError(
                    f"no store at {self.uri}: run `keygap ingest ...` first, or pass --store / set KEYGAP_STORE"
                )
            if root_type == pafs.FileType.File:
                raise StoreError(f"--store {self.uri} is a file: pass the folder that holds {MANIFEST}")
            raise StoreError(f"{self.uri} is not a keygap store (no {MANIFEST}): pass the folder that holds it")
        if info.type != pafs.FileType.File:
            raise StoreError(f"{manifest} is not a file: pass the folder of a keygap store as --store")

        def read() -> bytes:
            with self.fs.open_input_stream(manifest) as f:
                return f.read()

        self.meta = load_manifest(read, manifest)
        self._footers: dict[tuple, tuple] = {}  # (path, size, mtime_ns) -> (FileMetaData, FileIndex | None)

    # -- listing ----------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @cached_property
    def inventory(self) -> Inventory:
        """The committed key files and commit markers (see store/inventory.py); computed once per KeyStore."""
        return scan(self.fs, self.root)

    @property
    def _key_files(self) -> dict[tuple, list[KeyFile]]:
        return self.inventory.files

    @property
    def problems(self) -> list[str]:
        """What was left out of this view of the store, one line each (damaged files, missing files)."""
        return self.inventory.problems

    def refresh(self) -> None:
        """Forget the cached inventory (after an ingest wrote more files)."""
        self.__dict__.pop("inventory", None)

    def _vector_files(self, kind: str) -> dict[tuple, list[KeyFile]]:
        if kind not in VECTOR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(VECTOR_KINDS)}, got {kind!r}")
        return self.inventory.files if kind == "key" else self.inventory.queries

    def partitions(self, kind: str = "key") -> list[dict]:
        """One dict per partition: model, benchmark, layer, rope, modality, rows, files, dim, dtype, bytes.

        ``kind="query"`` lists the queries tree. From the inventory: no file is opened."""
        rows = []
        for key, files in sorted(self._vector_files(kind).items()):
            rows.append(
                dict(zip(PARTITIONS, key))
                | {"rows": sum(f.rows for f in files), "files": len(files), "dim": files[0].dim,
                   "dtype": files[0].dtype, "bytes": sum(f.size for f in files)}
            )
        return rows

    def partitions_exist(self) -> bool:
        return bool(self._key_files)

    def models(self) -> list[str]:
        return sorted({k[0] for k in self._key_files})

    def benchmarks(self, model: str | None = None) -> list[str]:
        return sorted({k[1] for k in self._key_files if model in (None, k[0])})

    def layers(self, model: str, benchmark: str | None = None) -> list[int]:
        return sorted({k[2] for k in self._key_files if k[0] == model and benchmark in (None, k[1])})

    def segments(self, model: str, benchmark: str, modality: str, *, layer: int | None = None,
                 rope: str | None = None) -> list[str]:
        """The prompt segments stored for a modality (of one layer / RoPE stage, or of all), sorted.

        From the commit markers' file lists; a file whose marker does not name them (a store written before
        they did) has its ``segment`` column read."""
        found: set[str] = set()
        for key, files in self._key_files.items():
            if key[0] != model or key[1] != benchmark or key[4] != modality:
                continue
            if (layer is not None and key[2] != int(layer)) or (rope is not None and key[3] != rope):
                continue
            for f in files:
                if f.segments is None:
                    column = self._read(f.path, columns=["segment"])["segment"].cast(pa.string())
                    found.update(str(v) for v in pc.unique(column).to_pylist() if v is not None)
                else:
                    found.update(f.segments)
        return sorted(found)

    def runs(self) -> list[dict]:
        """Run manifests, oldest first; an unreadable one is left out and reported in ``problems``."""
        out = []
        for info in self.location.list(RUNS_DIR):
            if not info.base_name.endswith(".json") or info.base_name.startswith("."):
                continue
            try:
                with self.fs.open_input_stream(info.path) as f:
                    run = json.loads(f.read())
            except (OSError, ValueError) as exc:
                run = f"unreadable ({first_line(exc)})"
            if not isinstance(run, dict):
                problem = f"run manifest {info.path} is damaged and was left out: delete it and re-run that ingest"
                if problem not in self.problems:
                    self.problems.append(problem)
                continue
            out.append(run)
        return sorted(out, key=lambda r: str(r.get("started", "")))

    def changed(self) -> bool:
        """Whether commit markers came or went since the inventory was taken (an ingest or a compaction)."""
        return "inventory" in self.__dict__ and marker_listing(self.fs, self.root) != self.inventory.marker_names

    def samples(self, columns: list[str] | None = None) -> pa.Table:
        """The samples table: one row per committed (model, benchmark, sample), read from the commit markers."""
        tables = self._retry_vanished("the samples",
                                      lambda: [self._read(m.path, columns=columns) for m in self.inventory.markers])
        if not tables:
            return SAMPLES_SCHEMA.empty_table() if columns is None else SAMPLES_SCHEMA.empty_table().select(columns)
        return pa.concat_tables(tables, promote_options="default")

    def done_samples(self, model: str, benchmark: str) -> set[str]:
        t = self.samples(["model", "benchmark", "sample_id", "status"])
        mask = pc.and_(pc.equal(t["model"], model), pc.equal(t["benchmark"], benchmark))
        t = t.filter(mask)
        return {s for s, st in zip(t["sample_id"].to_pylist(), t["status"].to_pylist()) if st == "done"}

    # -- slice reads ------------------------------------------------------------------------------------
    def load(
        self,
        model: str,
        benchmark: str,
        layer: int,
        modality: str,
        rope: str = "post",
        *,
        segments: Filter = None,
        samples: Filter = None,
        n: int | None = None,
        seed: int | None = None,
        kind: str = "key",
    ) -> KeySlice:
        """Read one slice as float32, touching only the row groups that hold the rows returned
        (``kind="query"``: the stored query vectors instead of the keys).

        ``n`` rows are a uniform random sample: a window of the store's random order that starts at 0
        without a seed and at a seed-drawn point otherwise, so one seed takes the same (sample id,
        position) tokens in every layer (store/sampling.py). ``segments``/``samples`` restrict the rows
        before sampling. Rows come in sample order (the first k of n rows are the k-row sample).
        """
        if n is not None and n < 0:
            raise ValueError("n must be positive or None (all rows)")
        key = (model, benchmark, int(layer), rope, modality)
        return self._retry_vanished(self._describe(key), lambda: self._load(key, segments, samples, n, seed, kind))

    def _retry_vanished(self, what: str, read: Callable[[], _T]) -> _T:
        """``read()``, once more on a fresh inventory when a file it listed vanished: a compaction replaced
        the files this view of the store listed."""
        try:
            return read()
        except FileNotFoundError:
            self.refresh()
            try:
                return read()
            except FileNotFoundError as exc:
                raise StoreError(
                    f"a file of {what} vanished while reading ({first_line(exc)}): "
                    "is something deleting files in the store? Try again"
                ) from None

    def _load(self, key: tuple, segments: Filter, samples: Filter, n: int | None, seed: int | None,
              kind: str) -> KeySlice:
        files = self._vector_files(kind).get(key)
        if not files:
            if kind == "query":
                raise StoreError(f"no queries for {self._describe(key)}: ingest with --queries "
                                 "(`keygap sql \"SELECT DISTINCT model, layer, modality FROM queries\"` lists "
                                 "what is stored)")
            raise StoreError(f"no keys for {self._describe(key)}; {self._what_exists(key)}")
        pfs = [self._parquet(f) for f in files]
        indexes = [self._index(f, pf) for f, pf in zip(files, pfs)]
        masks = None
        if segments is not None or samples is not None:
            masks = [_filter_mask(pf, segments, samples) for pf in pfs]

        def read_rand(i: int, groups: np.ndarray) -> np.ndarray:
            return _read_groups(pfs[i], groups, [RAND])[RAND].to_numpy()

        choice = choose(indexes, read_rand, n, seed, masks)
        columns = [*_LABEL_COLUMNS, "dtype", VECTOR_COLUMN[VECTOR_KINDS[kind]]]
        parts = [_read_rows(pf, rows, columns) for pf, rows in zip(pfs, choice.rows) if len(rows)]
        if not parts:
            dim = files[0].dim
            return KeySlice(
                np.zeros((0, dim), np.float32), np.array([], object), np.array([], np.int32), np.array([], np.int32),
                np.array([], object), np.array([], np.int16), choice.total, _identity(files),
            )
        table = pa.concat_tables(parts, promote_options="default")
        if not np.array_equal(choice.order, np.arange(len(choice.order))):
            table = table.take(pa.array(choice.order))
        dtypes = set(table["dtype"].unique().to_pylist())
        if len(dtypes) > 1:
            raise StoreError(f"{self._describe(key)} mixes key dtypes {sorted(dtypes)}: ingest it into one dtype")
        x = codec.decode(table[columns[-1]], dtypes.pop())
        return KeySlice(
            x=x,
            sample_id=_np(table["sample_id"]),
            position=table["position"].to_numpy(),
            token_id=table["token_id"].to_numpy(),
            segment=_np(table["segment"]),
            image_index=table["image_index"].to_numpy(),
            total=choice.total,
            files=_identity(files),
        )

    def files_of(self, model: str, benchmark: str, layer: int, modality: str, rope: str = "post",
                 kind: str = "key") -> tuple:
        """(path, size, mtime_ns) of a partition's files: the identity a cached result depends on."""
        return _identity(self._vector_files(kind).get((model, benchmark, int(layer), rope, modality), []))

    # -- attention allocation ---------------------------------------------------------------------------
    def attention_layers(self, model: str, benchmark: str) -> list[int]:
        """Layers with committed attention rows (`keygap ingest --attention`)."""
        return sorted({k[2] for k in self.inventory.attention if k[:2] == (model, benchmark)})

    def load_attention(self, model: str, benchmark: str, layers: int | Iterable[int] | None = None,
                       columns: list[str] | None = None) -> pa.Table:
        """Committed attention rows of one model and benchmark (ATTENTION_SCHEMA plus a ``layer`` column,
        dictionary columns as plain strings); ``layers`` limits which. A StoreError says how to get them."""
        wanted = None if layers is None else {int(x) for x in _as_list(layers)}
        return self._retry_vanished(f"the attention of model={model}, benchmark={benchmark}",
                                    lambda: self._load_attention(model, benchmark, wanted, columns))

    def _load_attention(self, model: str, benchmark: str, wanted: set[int] | None,
                        columns: list[str] | None) -> pa.Table:
        found = sorted(k for k in self.inventory.attention if k[:2] == (model, benchmark)
                       and (wanted is None or k[2] in wanted))
        if not found:
            raise StoreError(f"no attention rows for model={model}, benchmark={benchmark}"
                             + ("" if wanted is None else f", layers {sorted(wanted)}")
                             + ": ingest with --attention")
        names = [c for c in (columns or ATTENTION_SCHEMA.names) if c != "layer"]
        tables = []
        for key in found:
            for f in self.inventory.attention[key]:
                t = self._read(f.path, columns=names)
                t = t.append_column("layer", pa.array(np.full(t.num_rows, key[2], np.int32)))
                tables.append(t)
        table = pa.concat_tables(tables, promote_options="default")
        return pa.table({name: (col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col)
                         for name, col in zip(table.column_names, table.columns)})

    def attention_files_of(self, model: str, benchmark: str) -> tuple:
        """(path, size, mtime_ns) of a model's attention files on a benchmark: their data identity."""
        return _identity([f for k, files in sorted(self.inventory.attention.items()) if k[:2] == (model, benchmark)
                          for f in files])

    # -- helpers ----------------------------------------------------------------------------------------
    def _parquet(self, f: KeyFile) -> pq.ParquetFile:
        """Open a key file, parsing its footer once per KeyStore (a sweep reads the same files again)."""
        ident = (f.path, f.size, f.mtime_ns)
        cached = self._footers.get(ident)
        try:
            pf = pq.ParquetFile(self.fs.open_input_file(f.path), metadata=cached[0] if cached else None)
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            raise _damaged(f"{f.path} is not a readable Parquet file", exc) from None
        if cached is None:
            if len(self._footers) >= _FOOTER_CACHE:
                self._footers.pop(next(iter(self._footers)))
            self._footers[ident] = (pf.metadata, None)
        return pf

    def _index(self, f: KeyFile, pf: pq.ParquetFile) -> FileIndex:
        ident = (f.path, f.size, f.mtime_ns)
        md, index = self._footers.get(ident, (pf.metadata, None))
        if index is None:
            index = FileIndex.of(pf)
            self._footers[ident] = (md, index)
        return index

    def _read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.ParquetFile(self.fs.open_input_file(path)).read(columns=columns)
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            raise _damaged(f"{path} is not a readable Parquet file", exc) from None

    def _describe(self, key: tuple) -> str:
        return ", ".join(f"{k}={v}" for k, v in zip(PARTITIONS, key))

    def _what_exists(self, key: tuple) -> str:
        have = list(self._key_files)
        if not have:
            return "the store holds no keys yet: run `keygap ingest`"
        for i, name in enumerate(PARTITIONS):
            options = sorted({k[i] for k in have if k[:i] == key[:i]}, key=str)
            if key[i] not in options:
                return f"{name} must be one of: {', '.join(map(str, options))}" if options else "see `keygap info`"
        return "see `keygap info`"


def _as_list(value: str | int | Iterable[str | int]) -> list[str]:
    return [str(value)] if isinstance(value, (str, int)) else [str(v) for v in value]


def _np(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)


def _identity(files: Iterable[KeyFile]) -> tuple[tuple[str, int, int], ...]:
    return tuple((f.path, f.size, f.mtime_ns) for f in files)


def _read_groups(pf: pq.ParquetFile, groups: Iterable[int], columns: list[str]) -> pa.Table:
    try:
        return pf.read_row_groups([int(g) for g in groups], columns=columns)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise _damaged("a key file is damaged", exc) from None


def _filter_mask(pf: pq.ParquetFile, segments: Filter, samples: Filter) -> np.ndarray:
    """Per row of a file: does it pass the segment and sample filters (reads only those small columns)."""
    cols = (["segment"] if segments is not None else []) + (["sample_id"] if samples is not None else [])
    t = _read_groups(pf, range(pf.metadata.num_row_groups), cols)
    mask = np.ones(t.num_rows, dtype=bool)
    if segments is not None:
        mask &= _is_in(t["segment"], _as_list(segments))
    if samples is not None:
        mask &= _is_in(t["sample_id"], _as_list(samples))
    return mask


def _is_in(column: pa.ChunkedArray, values: list[str]) -> np.ndarray:
    """Row mask: the column's value (as text) is one of ``values``."""
    return pc.is_in(column.cast(pa.string()), pa.array(values, pa.string())).to_numpy(zero_copy_only=False)


def _damaged(what: str, exc: BaseException) -> StoreError:
    return StoreError(f"{what} ({first_line(exc)}): delete it and re-run the ingest that wrote it")


def _read_rows(pf: pq.ParquetFile, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows (sorted indices) of one file, reading only the row groups that contain them."""
    md = pf.metadata
    bounds = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
    groups = np.unique(np.searchsorted(bounds, rows, side="right") - 1)
    t = _read_groups(pf, groups, columns)
    # row index inside the concatenation of the selected groups
    starts = bounds[groups]
    local = np.concatenate([[0], np.cumsum(bounds[groups + 1] - starts)])[:-1]
    g_of_row = np.searchsorted(bounds, rows, side="right") - 1
    pos = local[np.searchsorted(groups, g_of_row)] + (rows - bounds[g_of_row])
    if len(pos) == t.num_rows and np.array_equal(pos, np.arange(t.num_rows)):
        return t
    if len(pos) and np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos))):
        return t.slice(int(pos[0]), len(pos))
    return t.take(pa.array(pos))

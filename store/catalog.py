"""DuckDB over a store: views ``keys``, ``queries``, ``attention``, ``samples``, ``runs`` and ``results``,
read-only by construction.

``keys.vec`` is decoded by an Arrow-vectorised Python UDF. DuckDB prunes unused view columns, so a query
that does not select ``vec`` never calls it and reads no key bytes (measured: zero UDF calls).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import codec
from .errors import StoreError, first_line
from .inventory import KeyFile, list_parquet
from .jsonsafe import json_safe
from .reader import KeyStore
from .results import RESULTS_SCHEMA
from .schema import ATTENTION_SCHEMA, KEYS_SCHEMA, QUERIES_SCHEMA, RESULTS_DIR, SAMPLES_SCHEMA

VIEWS = ("keys", "queries", "attention", "samples", "runs", "results", "tokens")
#: the columns of the keys and queries views: labels, partitions, the raw vector and its decoded ``vec``
_VECTOR_VIEW = (
    "CREATE VIEW {view} AS SELECT model, benchmark, layer, rope, modality, "
    "sample_id, position, token_id, segment, image_index, rope_t, rope_h, rope_w, run_id, rand, dtype, "
    "octet_length({column}) // CASE dtype WHEN 'float32' THEN 4 ELSE 2 END AS dim, {column}, "
    "keygap_decode({column}, dtype) AS vec FROM _keygap_{view}"
)


def decode_vectors(key: pa.Array, dtype: pa.Array) -> pa.Array:
    """keygap_decode(key BLOB, dtype VARCHAR) -> FLOAT[]; rows may mix dtypes and widths (several models)."""
    if isinstance(key, pa.ChunkedArray):
        key = key.combine_chunks()
    if isinstance(dtype, pa.ChunkedArray):
        dtype = dtype.combine_chunks()
    n = len(key)
    if n == 0:
        return pa.array([], pa.list_(pa.float32()))
    dtypes = np.asarray(dtype.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    lengths = np.asarray(pa.compute.binary_length(key).to_numpy(zero_copy_only=False))
    kinds = set(dtypes.tolist())
    if len(kinds) == 1 and len(set(lengths.tolist())) == 1:
        x = codec.decode(key, kinds.pop())
        offsets = np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(x.reshape(-1)))
    values: list[np.ndarray] = [np.empty(0, np.float32)] * n  # every row is filled below
    for kind in kinds:
        for width in set(lengths[dtypes == kind].tolist()):
            rows = np.flatnonzero((dtypes == kind) & (lengths == width))
            x = codec.decode(key.take(pa.array(rows)), kind)
            for r, v in zip(rows, x):
                values[r] = v
    dims = np.array([len(v) for v in values])
    offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(values).astype(np.float32)))


class SqlCatalog:
    """The store as SQL tables: Arrow objects built once, each query on a fresh, locked-down connection.

    Read-only by construction, not by a statement filter: DuckDB itself never touches the file system
    (``enable_external_access`` off, no temp directory, so no allowed directory either); every table is an
    Arrow dataset or table that Python built from the store's *committed* files and handed to DuckDB. A
    statement can therefore neither read nor write a file, and since every query gets a new in-memory
    connection, nothing it creates or drops (a view, a table) outlives it. ``problems`` lists what was left
    out because it could not be read (a damaged file), so one bad file never breaks every query.
    """

    def __init__(
        self, store: str | os.PathLike[str] | KeyStore, *, memory_limit: str | None = None, threads: int | None = None
    ):
        self.store = store if isinstance(store, KeyStore) else KeyStore(store)
        self.memory_limit = memory_limit
        self.threads = threads
        ks = self.store
        self.keys = _partitioned(ks.inventory.all_files(), KEYS_SCHEMA, ks.fs, PARTITION_FIELDS)
        self.queries = _partitioned([f for fs in ks.inventory.queries.values() for f in fs], QUERIES_SCHEMA, ks.fs,
                                    PARTITION_FIELDS)
        self.attention = _partitioned([f for fs in ks.inventory.attention.values() for f in fs], ATTENTION_SCHEMA,
                                      ks.fs, PARTITION_FIELDS[:3])
        self.samples = _dataset([m.path for m in ks.inventory.markers], SAMPLES_SCHEMA, ks.fs)
        self.tokens = _tokens_table(self.samples)
        self.runs = _runs_table(ks.runs())
        self.results, results_problems = _results_table(ks)
        self.problems = list(ks.problems) + results_problems

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory connection with the views of VIEWS and no file access."""
        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "temp_directory": "",
        }
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = self.threads
        try:
            con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise StoreError(f"cannot start DuckDB: {' '.join(str(exc).split())} (check --memory-limit)") from None
        # duckdb's stubs take the UDF kind only as an enum whose module moved between releases (functional in
        # 1.x, func in 2.x); the string is accepted by both at run time
        con.create_function(  # type: ignore[call-overload]
            "keygap_decode",
            decode_vectors,
            [duckdb.sqltype("BLOB"), duckdb.sqltype("VARCHAR")],
            duckdb.list_type(duckdb.sqltype("FLOAT")),
            type="arrow",
            side_effects=False,
        )
        for name in VIEWS:
            con.register(f"_keygap_{name}", getattr(self, name))
        con.execute(_VECTOR_VIEW.format(view="keys", column="key"))
        con.execute(_VECTOR_VIEW.format(view="queries", column="query"))
        con.execute(
            "CREATE VIEW attention AS SELECT model, benchmark, layer, sample_id, head, query, n_queries, "
            "\"group\", modality, keys, token_share, mass, run_id FROM _keygap_attention"
        )
        for name in VIEWS[3:]:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _keygap_{name}")
        con.execute("SET lock_configuration = true")
        return con


def connect(store: str | KeyStore | SqlCatalog) -> duckdb.DuckDBPyConnection:
    """A fresh read-only connection over a store (see :class:`SqlCatalog`)."""
    catalog = store if isinstance(store, SqlCatalog) else SqlCatalog(store)
    return catalog.connect()


PARTITION_FIELDS = [
    pa.field("model", pa.string()),
    pa.field("benchmark", pa.string()),
    pa.field("layer", pa.int32()),
    pa.field("rope", pa.string()),
    pa.field("modality", pa.string()),
]


def _partitioned(files: Iterable[KeyFile], schema: pa.Schema, fs: pafs.FileSystem,
                 fields: list[pa.Field]) -> pads.Dataset:
    """A dataset over committed files whose partition values come from the inventory, not from globbing."""
    return _dataset([f.path for f in files], schema, fs, [_partition_expression(f.partition, fields) for f in files],
                    fields)


def _partition_expression(partition: tuple, fields: list[pa.Field] = PARTITION_FIELDS) -> pads.Expression:
    expr = None
    for f, value in zip(fields, partition):
        term = pads.field(f.name) == pa.scalar(value, f.type)
        expr = term if expr is None else expr & term
    return expr


def _dataset(
    paths: list[str], schema: pa.Schema, fs: pafs.FileSystem, partitions: pads.Partitioning | None = None,
    partition_fields: Sequence[pa.Field] = (),
) -> pads.Dataset:
    """A dataset over exactly these files (no globbing, so odd characters in paths are harmless)."""
    full = pa.schema(list(schema) + list(partition_fields))
    return pads.FileSystemDataset.from_paths(
        paths, schema=full, format=pads.ParquetFileFormat(), filesystem=fs, partitions=partitions,
    )


def _tokens_table(samples: pads.Dataset) -> pa.Table:
    """The ``tokens`` view: (model, token_id, text) for every token id a committed sample kept, its text as
    the run's tokenizer decoded it (samples.token_text); empty for stores written before it was recorded."""
    models, ids, texts, seen = [], [], [], set()
    table = samples.to_table(columns=["model", "token_text"], filter=pads.field("token_text").is_valid())
    for model, text in zip(table["model"].to_pylist(), table["token_text"].to_pylist()):
        try:
            pairs = json.loads(text)
        except ValueError:
            continue
        for k, v in pairs.items():
            if (model, k) not in seen:
                seen.add((model, k))
                models.append(model)
                ids.append(int(k))
                texts.append(str(v))
    return pa.table({"model": pa.array(models, pa.string()), "token_id": pa.array(ids, pa.int32()),
                     "text": pa.array(texts, pa.string())})


def _runs_table(runs: list[dict]) -> pa.Table:
    """Run manifests as a table: top-level scalars as columns, nested values as they are when their types
    agree across runs, else as JSON text."""
    if not runs:
        return pa.table({"run_id": pa.array([], pa.string()), "status": pa.array([], pa.string())})
    try:
        return pa.Table.from_pylist(runs)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        names = list(dict.fromkeys(k for r in runs for k in r))
        columns = {}
        for name in names:
            values = [r.get(name) for r in runs]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                text = [None if v is None else json.dumps(json_safe(v)) for v in values]
                columns[name] = pa.array(text, pa.string())
        return pa.table(columns)


def _results_table(ks: KeyStore) -> tuple[pa.Table, list[str]]:
    """The results cache files, each read on its own: a damaged or foreign one is reported and left out."""
    tables, problems = [], []
    for info in list_parquet(ks.fs, posixpath.join(ks.root, RESULTS_DIR), recursive=False):
        rel = posixpath.relpath(info.path, ks.root)
        try:
            table = pq.read_table(ks.fs.open_input_file(info.path))
            for field in RESULTS_SCHEMA:  # a file written before a column was added reads it as null
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(len(table), field.type))
            tables.append(table.select(RESULTS_SCHEMA.names).cast(RESULTS_SCHEMA))
        except (OSError, pa.ArrowInvalid, KeyError, ValueError) as exc:
            problems.append(f"{rel} is not a readable results file ({first_line(exc)}) and was left out: "
                            "delete it (results/ is a cache)")
    return (pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()), problems

"""DuckDB over a store: views ``keys``, ``queries``, ``attention``, ``samples``, ``runs`` and ``results``,
read-only by construction.

``keys.vec`` is decoded by an Arrow-vectorised Python UDF, ``keys.norm`` (the L2 norm) straight from the
key bytes by another, so a norm aggregate never builds lists. DuckDB prunes unused view columns, so a
query that selects neither never calls them and reads no key bytes (measured: zero UDF calls); filters on
partition columns reach the Arrow dataset, which skips the other partitions' files (EXPLAIN shows them
under the scan's Filters). Macros vec_norm, vec_dot, vec_cosine, vec_distance and vec_head (per-head
slices) come with every connection.
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
from .schema import ATTENTION_SCHEMA, KEY_DTYPES, KEYS_SCHEMA, QUERIES_SCHEMA, RESULTS_DIR, SAMPLES_SCHEMA

VIEWS = ("keys", "queries", "attention", "samples", "runs", "results", "tokens")
#: the columns of the keys and queries views: labels, partitions, the raw vector, its decoded ``vec`` and its
#: L2 ``norm`` (computed from the bytes, no list built)
_VECTOR_VIEW = (
    "CREATE VIEW {view} AS SELECT model, benchmark, layer, rope, modality, "
    "sample_id, position, token_id, segment, image_index, rope_t, rope_h, rope_w, run_id, rand, dtype, "
    "octet_length({column}) // CASE dtype WHEN 'float32' THEN 4 ELSE 2 END AS dim, {column}, "
    "keygap_decode({column}, dtype) AS vec, keygap_norm({column}, dtype) AS norm FROM _keygap_{view}"
)

#: Vector functions of every connection (README "SQL over vectors"). DuckDB's list functions do the work;
#: the macros name them and cast a literal vector (e.g. [0.1, 0.2]) to FLOAT[] so it meets ``vec``.
MACROS = {
    "vec_norm": "vec_norm(v) AS sqrt(list_dot_product(v, v))",
    "vec_dot": "vec_dot(v, w) AS list_dot_product(v, w::FLOAT[])",
    "vec_cosine": "vec_cosine(v, w) AS list_cosine_similarity(v, w::FLOAT[])",
    "vec_distance": "vec_distance(v, w) AS list_distance(v, w::FLOAT[])",
    "vec_head": "vec_head(v, h, head_dim) AS v[h * head_dim + 1 : (h + 1) * head_dim]",
}


def decode_vectors(key: pa.Array, dtype: pa.Array) -> pa.Array:
    """keygap_decode(key BLOB, dtype VARCHAR) -> FLOAT[]; rows may mix dtypes and widths (several models).

    Vectorised: one numpy decode per (dtype, width) present in the chunk, scattered into one values buffer;
    no Python loop over rows."""
    key, dtypes, lengths = _columns(key, dtype)
    n = len(key)
    if n == 0:
        return pa.array([], pa.list_(pa.float32()))
    groups = _groups(dtypes, lengths)
    if len(groups) == 1:
        (kind, _width), _rows = groups.popitem()
        x = codec.decode(key, kind)
        offsets = np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(x.reshape(-1)))
    dims = lengths // np.array([KEY_DTYPES[k] for k in dtypes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(dims)])
    values = np.empty(int(offsets[-1]), np.float32)
    for (kind, _width), rows in groups.items():
        x = codec.decode(key.take(pa.array(rows)), kind)
        values[(offsets[rows][:, None] + np.arange(x.shape[1])).reshape(-1)] = x.reshape(-1)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def key_norms(key: pa.Array, dtype: pa.Array) -> pa.Array:
    """keygap_norm(key BLOB, dtype VARCHAR) -> DOUBLE: the L2 norm of each key, straight from its bytes.

    The ``norm`` column of ``keys``: an aggregate over norms never builds the FLOAT[] lists that ``vec``
    needs (BENCHMARKS.md "Scale" measures both)."""
    key, dtypes, lengths = _columns(key, dtype)
    out = np.empty(len(key), np.float64)
    for (kind, _width), rows in _groups(dtypes, lengths).items():
        part = key if len(rows) == len(key) else key.take(pa.array(rows))
        x = codec.decode(part, kind)
        out[rows] = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    return pa.array(out)


def _columns(key: pa.Array | pa.ChunkedArray,
             dtype: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    if isinstance(key, pa.ChunkedArray):
        key = key.combine_chunks()
    if isinstance(dtype, pa.ChunkedArray):
        dtype = dtype.combine_chunks()
    dtypes = np.asarray(dtype.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    lengths = np.asarray(pa.compute.binary_length(key).to_numpy(zero_copy_only=False), dtype=np.int64)
    return key, dtypes, lengths


def _groups(dtypes: np.ndarray, lengths: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """Row indices of each (dtype, byte width) in a chunk (usually one: a chunk comes from one file)."""
    if len(dtypes) and (dtypes == dtypes[0]).all() and (lengths == lengths[0]).all():
        return {(str(dtypes[0]), int(lengths[0])): np.arange(len(dtypes))}
    kinds, kind_of = np.unique(dtypes.astype(str), return_inverse=True)
    pairs, which = np.unique(np.stack([kind_of.ravel(), lengths], axis=1), axis=0, return_inverse=True)
    which = which.ravel()
    return {(str(kinds[k]), int(w)): np.flatnonzero(which == i) for i, (k, w) in enumerate(pairs)}


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
        self._build()

    def _build(self) -> None:
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

    def refresh(self) -> None:
        """Take a new look at the store (its committed files may have changed: an ingest, a compaction)."""
        self.store.refresh()
        self._build()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory connection with the views of VIEWS and no file access.

        The tables are rebuilt first when commit markers came or went since they were built (one listing of
        samples/), so a long session sees what an ingest committed and never files a compaction deleted."""
        if self.store.changed():
            self.refresh()
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
        blob_varchar = [duckdb.sqltype("BLOB"), duckdb.sqltype("VARCHAR")]
        con.create_function(  # type: ignore[call-overload]
            "keygap_decode", decode_vectors, blob_varchar, duckdb.list_type(duckdb.sqltype("FLOAT")),
            type="arrow", side_effects=False,
        )
        con.create_function(  # type: ignore[call-overload]
            "keygap_norm", key_norms, blob_varchar, duckdb.sqltype("DOUBLE"), type="arrow", side_effects=False,
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
        for macro in MACROS.values():
            con.execute(f"CREATE MACRO {macro}")
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
    """A dataset over exactly these files (no globbing, so odd characters in paths are harmless).

    Pre-buffering (coalesced reads of whole column chunks ahead of decoding) saves round trips on object
    storage; on a local disk it only adds copies and memory: a norm aggregate over 1 GB of d=4096 keys ran
    ~1.6x faster without it (BENCHMARKS.md "Scale")."""
    full = pa.schema(list(schema) + list(partition_fields))
    local = isinstance(fs, pafs.LocalFileSystem)
    scan = pads.ParquetFragmentScanOptions(pre_buffer=not local)
    return pads.FileSystemDataset.from_paths(
        paths, schema=full, format=pads.ParquetFileFormat(default_fragment_scan_options=scan), filesystem=fs,
        partitions=partitions,
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

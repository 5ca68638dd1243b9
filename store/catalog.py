"""A DuckDB connection over a store: views ``keys``, ``samples``, ``runs`` and ``results``.

``keys.vec`` is decoded by an Arrow-vectorised Python UDF. DuckDB prunes unused view columns, so a query
that does not select ``vec`` never calls it and reads no key bytes (measured: zero UDF calls).
"""

from __future__ import annotations

import posixpath

import duckdb
import numpy as np
import pyarrow as pa

from . import codec
from .errors import StoreError
from .reader import KeyStore
from .schema import KEYS_DIR, RESULTS_DIR, RUNS_DIR, SAMPLES_DIR, SAMPLES_SCHEMA

VIEWS = ("keys", "samples", "runs", "results")


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
    values = [None] * n
    for kind in kinds:
        for width in set(lengths[dtypes == kind].tolist()):
            rows = np.flatnonzero((dtypes == kind) & (lengths == width))
            x = codec.decode(key.take(pa.array(rows)), kind)
            for r, v in zip(rows, x):
                values[r] = v
    dims = np.array([len(v) for v in values])
    offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(values).astype(np.float32)))


def connect(store: str | KeyStore, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views; locked down to the store when read_only.

    Read-only means: only the store's folder is reachable (``allowed_directories``), external access and
    extension installs are off, and the configuration is locked so a query cannot undo that.
    """
    ks = store if isinstance(store, KeyStore) else KeyStore(store)
    if "://" in ks.uri:
        raise StoreError("SQL over remote stores is not supported yet: copy the store locally, or query it with DuckDB's httpfs")
    con = duckdb.connect(":memory:")
    con.create_function(
        "keygap_decode",
        decode_vectors,
        [duckdb.sqltype("BLOB"), duckdb.sqltype("VARCHAR")],
        duckdb.list_type(duckdb.sqltype("FLOAT")),
        type="arrow",
        side_effects=False,
    )
    try:
        _create_views(con, ks)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open the store's tables: {' '.join(str(exc).split())}") from None
    if read_only:
        con.execute(f"SET allowed_directories = [{_quote(ks.root)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET lock_configuration = true")
    return con


def _create_views(con: duckdb.DuckDBPyConnection, ks: KeyStore) -> None:
    q, root = _quote, ks.root
    if ks.partitions_exist():
        con.execute(
            "CREATE VIEW keys AS SELECT model, benchmark, CAST(layer AS INTEGER) AS layer, rope, modality, "
            "sample_id, position, token_id, segment, image_index, rope_t, rope_h, rope_w, run_id, rand, dtype, "
            "octet_length(key) // CASE dtype WHEN 'float32' THEN 4 ELSE 2 END AS dim, key, "
            "keygap_decode(key, dtype) AS vec "
            f"FROM read_parquet({q(posixpath.join(root, KEYS_DIR, '**', '*.parquet'))}, hive_partitioning = true, "
            "hive_types = {'layer': INTEGER})"
        )
    else:
        con.execute(
            "CREATE VIEW keys AS SELECT NULL::VARCHAR AS model, NULL::VARCHAR AS benchmark, NULL::INTEGER AS layer, "
            "NULL::VARCHAR AS rope, NULL::VARCHAR AS modality, NULL::VARCHAR AS sample_id, NULL::INTEGER AS position, "
            "NULL::INTEGER AS token_id, NULL::VARCHAR AS segment, NULL::SMALLINT AS image_index, NULL::VARCHAR AS run_id, "
            "NULL::DOUBLE AS rand, NULL::VARCHAR AS dtype, NULL::BIGINT AS dim, NULL::BLOB AS key, NULL::FLOAT[] AS vec WHERE false"
        )
    if ks._list(SAMPLES_DIR, recursive=False):
        con.execute(
            f"CREATE VIEW samples AS SELECT * FROM read_parquet({q(posixpath.join(root, SAMPLES_DIR, '*.parquet'))}, union_by_name = true)"
        )
    else:
        cols = ", ".join(f"NULL::{_sql_type(f.type)} AS {f.name}" for f in SAMPLES_SCHEMA)
        con.execute(f"CREATE VIEW samples AS SELECT {cols} WHERE false")
    if ks.runs():
        con.execute(
            f"CREATE VIEW runs AS SELECT * FROM read_json_auto({q(posixpath.join(root, RUNS_DIR, '*.json'))}, "
            "union_by_name = true, format = 'auto')"
        )
    else:
        con.execute("CREATE VIEW runs AS SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS status WHERE false")
    if ks._list(RESULTS_DIR, recursive=False):
        con.execute(
            f"CREATE VIEW results AS SELECT * FROM read_parquet({q(posixpath.join(root, RESULTS_DIR, '*.parquet'))}, union_by_name = true)"
        )
    else:
        con.execute("CREATE VIEW results AS SELECT NULL::VARCHAR AS metric, NULL::DOUBLE AS value WHERE false")


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "DOUBLE"
    return "VARCHAR"

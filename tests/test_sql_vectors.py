"""SQL over key vectors: the norm column, the vec_* macros and the vectorised decode, against numpy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from store_helpers import write_synthetic_store

from store.catalog import SqlCatalog, decode_vectors, key_norms


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sqlvec") / "s"
    written = write_synthetic_store(root, samples=8, tokens=6, dim=8, dtype="float32", shift=0.5)
    ids, x = zip(*written[(1, "image")])
    return root, np.concatenate(ids), np.concatenate(x).astype(np.float64)


def _rows(con, sql):
    return con.sql(sql).fetchall()


def test_norm_column_and_macros_equal_numpy(store):
    root, _ids, x = store
    con = SqlCatalog(root).connect()
    order = "ORDER BY sample_id, position"
    where = "WHERE layer = 1 AND modality = 'image'"
    norms = np.array([r[0] for r in _rows(con, f"SELECT norm FROM keys {where} {order}")])
    np.testing.assert_allclose(norms, np.linalg.norm(x, axis=1), rtol=1e-6)
    got = [r[0] for r in _rows(con, f"SELECT vec_norm(vec) FROM keys {where} {order}")]
    np.testing.assert_allclose(got, norms, rtol=1e-6)
    w = np.linspace(-1, 1, 8)
    literal = "[" + ", ".join(f"{v:.6f}" for v in w) + "]"
    got = np.array(_rows(con, f"SELECT vec_dot(vec, {literal}), vec_cosine(vec, {literal}), "
                              f"vec_distance(vec, {literal}) "
                              f"FROM keys {where} {order}"))
    wf = np.round(w, 6).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(got[:, 0], x @ wf, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], (x @ wf) / np.linalg.norm(x, axis=1) / np.linalg.norm(wf), rtol=1e-5)
    np.testing.assert_allclose(got[:, 2], np.linalg.norm(x - wf, axis=1), rtol=1e-5)
    heads = _rows(con, f"SELECT vec_head(vec, 0, 4), vec_head(vec, 1, 4) FROM keys {where} {order}")
    np.testing.assert_array_equal(np.array([h[0] + h[1] for h in heads]), x.astype(np.float32))


def test_partition_filters_reach_the_scan(store):
    root, *_ = store
    plan = SqlCatalog(root).connect().sql(
        "EXPLAIN SELECT avg(norm) FROM keys WHERE layer = 1 AND modality = 'text'").fetchall()[0][1]
    scan = plan[plan.index("ARROW_SCAN"):]
    assert "Filters" in scan and "\"layer\" = 1" in scan and "\"modality\" = 'text'" in scan


def test_decoding_a_chunk_that_mixes_models_is_exact():
    rng = np.random.default_rng(3)
    rows = [(rng.standard_normal(d).astype(dt), name) for d, dt, name in
            [(4, np.float16, "float16"), (6, np.float32, "float32"), (4, np.float16, "float16"),
             (3, np.float32, "float32"),
             (6, np.float32, "float32")]]
    key = pa.array([v.tobytes() for v, _ in rows], pa.binary())
    dtype = pa.array([name for _, name in rows]).dictionary_encode()
    got = decode_vectors(key, dtype).to_pylist()
    for (v, _), g in zip(rows, got, strict=True):
        np.testing.assert_array_equal(np.array(g, np.float32), v.astype(np.float32))
    want = [np.linalg.norm(v.astype(np.float64)) for v, _ in rows]
    np.testing.assert_allclose(key_norms(key, dtype).to_numpy(), want,
                               rtol=1e-6)

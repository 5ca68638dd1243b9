"""The store: round trips, pruning, sampling, crash safety, SQL, and one-line errors on bad input."""

from __future__ import annotations

import json
import os

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats
from store_helpers import write_synthetic_store

from keygap_tui.cli import main as keygap
from store import codec
from store.catalog import connect
from store.errors import SqlError, StoreError
from store.reader import KeyStore
from store.schema import model_label, resolve_layers
from store.sql import query_store
from store.writer import KeyBatch, KeyWriter


def _batch(n=8, dim=4, keys=None, dtype="float16", modality="image", layer=1, sample="a"):
    keys = np.arange(n * dim, dtype=np.float32).reshape(n, dim) if keys is None else keys
    return KeyBatch(
        model="m", benchmark="b", layer=layer, rope="post", modality=modality,
        sample_id=np.array([sample] * n, dtype=object), position=np.arange(n), token_id=np.arange(n),
        segment=np.array(["image"] * n, dtype=object), keys=keys, dtype=dtype,
    )


def test_fp16_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 64)) * 50).astype(np.float16)
    with KeyWriter(tmp_path / "s", "r") as w:
        w.add(_batch(300, 64, x))
        w.commit([])
    got = KeyStore(tmp_path / "s").load("m", "b", 1, "image")
    order = np.argsort(got.position)
    assert got.x.dtype == np.float32
    assert np.array_equal(got.x[order].astype(np.float16).view(np.uint16), x.view(np.uint16))


def test_bf16_round_trip_is_bit_exact(tmp_path):
    torch = pytest.importorskip("torch")
    t = (torch.randn(200, 32) * 1e5).to(torch.bfloat16)  # beyond fp16's range on purpose
    bits = t.view(torch.uint16).numpy()
    with KeyWriter(tmp_path / "s", "r") as w:
        w.add(_batch(200, 32, bits, dtype="bfloat16"))
        w.commit([])
    got = KeyStore(tmp_path / "s").load("m", "b", 1, "image")
    order = np.argsort(got.position)
    assert np.array_equal(got.x[order], t.float().numpy())
    # float32 input is rounded to nearest-even bf16, as torch does
    with KeyWriter(tmp_path / "s2", "r") as w:
        w.add(_batch(200, 32, t.float().numpy() * 1.001, dtype="bfloat16"))
        w.commit([])
    got2 = KeyStore(tmp_path / "s2").load("m", "b", 1, "image")
    want = (t.float() * 1.001).to(torch.bfloat16).float().numpy()
    assert np.array_equal(got2.x[np.argsort(got2.position)], want)


def test_slice_read_touches_only_its_partition(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, layers=(1, 2))
    # Scramble the data pages of every file of another partition, keeping size, mtime and footer: the inventory
    # still lists them, so only a read that opened their pages would fail.
    other = root / "keys/model=m/benchmark=b/layer=2/rope=post/modality=image"
    for f in other.glob("*.parquet"):
        data = bytearray(f.read_bytes())
        data[4:len(data) // 2] = b"\xff" * (len(data) // 2 - 4)
        st = f.stat()
        f.write_bytes(bytes(data))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as the marker recorded them
    ks = KeyStore(root)
    assert ks.problems == []
    s = ks.load("m", "b", 1, "image", n=10)
    assert len(s) == 10 and all("layer=1" in f[0] and "modality=image" in f[0] for f in s.files)
    con = connect(root)
    n = con.sql("SELECT count(*) FROM keys WHERE layer = 1 AND modality = 'image'").fetchall()[0][0]
    assert n == 200
    norms = con.sql("SELECT avg(list_inner_product(vec, vec)) FROM keys WHERE layer = 2 AND modality = 'text'")
    assert norms.fetchall()[0][0] > 0
    with pytest.raises(duckdb.Error):
        con.sql("SELECT sum(octet_length(key)) FROM keys WHERE layer = 2 AND modality = 'image'").fetchall()


def test_a_damaged_key_file_is_reported_and_left_out(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, layers=(1, 2))
    damaged = sorted((root / "keys/model=m/benchmark=b/layer=2/rope=post/modality=image").glob("*.parquet"))[0]
    damaged.write_bytes(b"not parquet")
    ks = KeyStore(root)
    assert len(ks.problems) == 1 and damaged.relative_to(root).as_posix() in ks.problems[0]
    assert "delete it" in ks.problems[0]
    con = connect(root)
    assert con.sql("SELECT 1").fetchall() == [(1,)]
    rows = dict(con.sql("SELECT layer, count(*) FROM keys WHERE modality = 'image' GROUP BY ALL").fetchall())
    assert rows == {1: 200, 2: 200 - 50}  # the damaged file held one flush of 5 samples x 10 tokens
    assert {p["layer"]: p["rows"] for p in ks.partitions() if p["modality"] == "image"} == rows


def test_limit_read_is_a_uniform_random_sample(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=200, tokens=25, dim=4, flush_every=20)  # 10 files, 5,000 rows
    ks = KeyStore(root)
    s = ks.load("m", "b", 1, "image", n=1000)
    assert len(s) == 1000 and s.total == 5000
    idx = np.array([int(x[1:]) for x in s.sample_id]) * 25 + s.position  # global row number 0..4999
    assert len(np.unique(idx)) == 1000
    # uniform over rows: chi-square over 10 equal bins and a KS test, fixed data so no flakiness
    counts = np.bincount(idx // 500, minlength=10)
    assert stats.chisquare(counts).pvalue > 0.01
    assert stats.kstest(idx / 5000, "uniform").pvalue > 0.01
    # the same tokens in every layer (the key is a hash of sample and position), and a seed draws another sample
    s_seed = ks.load("m", "b", 1, "image", n=1000, seed=7)
    assert len(set(zip(s_seed.sample_id, s_seed.position)) ^ set(zip(s.sample_id, s.position))) > 0
    idx_seed = np.array([int(x[1:]) for x in s_seed.sample_id]) * 25 + s_seed.position
    assert stats.chisquare(np.bincount(idx_seed // 500, minlength=10)).pvalue > 0.01


def test_filters_restrict_before_sampling(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=10, tokens=5)
    ks = KeyStore(root)
    s = ks.load("m", "b", 1, "image", samples=["s0001", "s0003"], n=4, seed=0)
    assert set(s.sample_id) <= {"s0001", "s0003"} and s.total == 10 and len(s) == 4
    assert len(ks.load("m", "b", 1, "text", segments=["image"])) == 0


def test_interrupted_write_leaves_store_readable_and_resume_is_clean(tmp_path, monkeypatch):
    root = tmp_path / "s"
    w = KeyWriter(root, "r")
    w.add(_batch(8, sample="a"))
    w.commit([{"model": "m", "benchmark": "b", "sample_id": "a", "status": "done"}])
    w.flush()
    # second flush dies half way: the key file is written, the samples marker is not
    w.add(_batch(8, sample="b"))
    w.add(_batch(8, sample="b", modality="text"))
    w.commit([{"model": "m", "benchmark": "b", "sample_id": "b", "status": "done"}])
    real = pq.write_table
    calls = {"n": 0}

    def dying(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            real(table.slice(0, 3), where, **kw)  # a partial temporary file exists when we die
            raise KeyboardInterrupt
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", dying)
    with pytest.raises(KeyboardInterrupt):
        w.flush()
    monkeypatch.setattr(pq, "write_table", real)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], "no temporary file may survive"
    ks = KeyStore(root)
    assert ks.done_samples("m", "b") == {"a"}
    assert len(ks.load("m", "b", 1, "image")) >= 8  # readable (may include b's committed-looking orphan)
    # re-opening the run removes the orphan (key file without its samples marker)
    w2 = KeyWriter(root, "r")
    ks = KeyStore(root)
    assert set(ks.load("m", "b", 1, "image").sample_id) == {"a"}
    w2.add(_batch(8, sample="b"))
    w2.commit([{"model": "m", "benchmark": "b", "sample_id": "b", "status": "done"}])
    w2.close()
    ks = KeyStore(root)
    assert ks.done_samples("m", "b") == {"a", "b"}
    assert len(ks.load("m", "b", 1, "image")) == 16


def test_staged_but_uncommitted_keys_are_dropped(tmp_path):
    w = KeyWriter(tmp_path / "s", "r")
    w.add(_batch(8))
    w.close()
    assert KeyStore(tmp_path / "s").partitions() == []


def test_vec_decoding_equals_written_values(tmp_path):
    root = tmp_path / "s"
    written = write_synthetic_store(root, samples=6, tokens=4, dim=8, dtype="float32")
    con = connect(root)
    rows = con.sql("SELECT sample_id, position, vec, dim FROM keys WHERE layer = 1 AND modality = 'text' "
                   "ORDER BY sample_id, position").fetchall()
    ids, x = zip(*written[(1, "text")])
    want = np.concatenate(x)
    got = np.array([r[2] for r in rows], dtype=np.float32)
    assert got.shape == want.shape and np.array_equal(got, want) and rows[0][3] == 8
    q = "SELECT modality, avg(sqrt(list_inner_product(vec, vec))) FROM keys WHERE layer = 1 GROUP BY 1 ORDER BY 1"
    res = dict(query_store(str(root), q).to_pylist()[i].values() for i in range(2))
    assert res["text"] == pytest.approx(np.linalg.norm(want, axis=1).mean(), rel=1e-5)


def test_vec_decoding_of_mixed_models(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, model="a", dim=8, dtype="float16", samples=4)
    write_synthetic_store(root, model="b", dim=12, dtype="float32", samples=4, run_id="run1")
    got = connect(root).sql("SELECT model, min(len(vec)), max(len(vec)) FROM keys GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("a", 8, 8), ("b", 12, 12)]


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TABLE t AS SELECT 1",
        "COPY (SELECT 1) TO 'x.csv'",
        "INSTALL httpfs",
        "ATTACH 'x.db'",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW keys",
    ],
)
def test_sql_refuses_writes(tmp_path, query):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=2)
    with pytest.raises(SqlError, match="read-only"):
        query_store(str(root), query)


def test_sql_cannot_read_outside_the_store(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=2)
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with pytest.raises(SqlError, match="Permission"):
        query_store(str(root), f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')")


def test_samples_and_runs_views(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=7)
    con = connect(root)
    assert con.sql("SELECT count(*) FROM samples").fetchall()[0][0] == 7
    assert con.sql("SELECT run_id, status FROM runs").fetchall() == [("run0", "done")]


def _cli(capsys, *args):
    """`keygap ARGS` in this process (the console script's own main): (exit code, stdout, stderr)."""
    code = keygap(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sql_info_and_formats(tmp_path, capsys, monkeypatch):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=3)
    query = "SELECT modality, count(*) AS n FROM keys GROUP BY 1 ORDER BY 1"
    code, out, err = _cli(capsys, "sql", "--store", str(root), query, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [{"modality": "image", "n": 30}, {"modality": "text", "n": 30}]
    target = tmp_path / "o.parquet"
    code, _, err = _cli(capsys, "sql", "--store", str(root), "SELECT * FROM keys", "--format", "parquet", "--out",
                        str(target))
    assert code == 0 and pq.read_table(target).num_rows == 60, err
    code, out, _ = _cli(capsys, "sql", "--store", str(root), "SELECT layer, vec FROM keys LIMIT 3", "--format", "csv")
    assert code == 0 and out.startswith('"layer","vec"')
    monkeypatch.setenv("KEYGAP_STORE", str(root))
    code, out, _ = _cli(capsys, "info", "--json")
    assert code == 0 and json.loads(out)["rows"] == 60
    code, out, _ = _cli(capsys, "info")
    assert code == 0 and "image" in out and "text" in out


@pytest.mark.parametrize(
    ("setup", "args", "needle"),
    [
        ("missing", ["info"], "no store at"),
        ("version", ["info"], "schema version 99"),
        ("ok", ["sql", "SELEC 1"], "syntax error"),
        ("ok", ["sql", "SELECT * FROM nope"], "nope"),
        ("ok", ["sql", "DELETE FROM keys"], "read-only"),
    ],
)
def test_bad_input_gives_one_line_errors(tmp_path, capsys, setup, args, needle):
    root = tmp_path / "s"
    if setup != "missing":
        write_synthetic_store(root, samples=2)
    if setup == "version":
        (root / "keygap.json").write_text(json.dumps({"schema_version": 99}))
    code, out, err = _cli(capsys, *args, "--store", str(root))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert needle.lower() in err.lower()
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["sql", "SELECT count(*) AS n, avg(len(vec)) AS d FROM keys", "--format", "json"],
                                  ["info", "--json"]])
def test_a_damaged_file_is_a_warning_and_the_rest_answers(tmp_path, capsys, args):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=2)
    damaged = next((root / "keys").rglob("part-*.parquet"))
    damaged.write_bytes(b"PAR1 garbage")
    code, out, err = _cli(capsys, *args, "--store", str(root))
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and damaged.name in lines[0] and "left out" in lines[0]
    answer = json.loads(out)
    assert (answer[0]["n"] if args[0] == "sql" else answer["rows"]) == 20  # the other modality's 2 x 10 keys


def test_writer_refuses_a_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a keygap store"):
        KeyWriter(tmp_path / "x", "r")
    assert (tmp_path / "x" / "file.txt").read_text() == "mine"


def test_model_label_and_layers():
    assert model_label("llava-hf/llava-1.5-7b-hf") == "llava-hf--llava-1.5-7b-hf"
    assert model_label("tiny:llava") == "tiny-llava"
    assert model_label("/models/Qwen2.5-VL-7B-Instruct/") == "Qwen2.5-VL-7B-Instruct"
    assert resolve_layers("early,middle,late", 32) == [1, 16, 31]
    assert resolve_layers("all", 3) == [0, 1, 2]
    assert resolve_layers("0,-1", 32) == [0, 31]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers("40", 32)


def test_codec_rejects_ragged_vectors():
    import pyarrow as pa

    with pytest.raises(ValueError, match="different lengths"):
        codec.decode(pa.array([b"\x00\x00\x00\x00", b"\x00\x00"]), "float16")


def _attention_batch(sample="a", layer=1):
    from store.writer import AttentionBatch

    groups = np.array(["sink", "image", "question"], dtype=object)
    return AttentionBatch(
        model="m", benchmark="b", layer=layer, sample_id=np.array([sample] * 6, dtype=object),
        head=np.repeat([0, 1], 3), query=np.array(["last"] * 6, dtype=object), n_queries=np.ones(6, int),
        group=np.tile(groups, 2), modality=np.tile(np.array(["special", "image", "text"], dtype=object), 2),
        keys=np.tile([1.0, 8.0, 3.0], 2), token_share=np.tile([1 / 12, 8 / 12, 3 / 12], 2),
        mass=np.array([0.5, 0.2, 0.3, 0.1, 0.6, 0.3]),
    )


def test_queries_and_attention_views_show_committed_files_only(tmp_path):
    root = tmp_path / "s"
    w = KeyWriter(root, "r")
    query = _batch(4, dim=8, sample="a", modality="text")
    query.kind = "query"
    w.add(_batch(8, sample="a"))
    w.add(query)
    w.add(_attention_batch("a"))
    w.commit([{"model": "m", "benchmark": "b", "sample_id": "a", "status": "done"}])
    w.flush()
    # a second flush's files without their commit marker: a killed run
    w.add(_attention_batch("b"))
    query_b = _batch(4, dim=8, sample="b", modality="text")
    query_b.kind = "query"
    w.add(query_b)
    w.commit([{"model": "m", "benchmark": "b", "sample_id": "b", "status": "done"}])
    w.flush()
    (root / "samples" / "part-r-00001.parquet").unlink()
    con = connect(str(root))
    assert con.execute("SELECT DISTINCT sample_id FROM attention").fetchall() == [("a",)]
    assert con.execute("SELECT DISTINCT sample_id FROM queries").fetchall() == [("a",)]
    got = con.execute("SELECT layer, head, \"group\", mass FROM attention ORDER BY head, mass").fetchall()
    assert got == [(1, 0, "image", 0.2), (1, 0, "question", 0.3), (1, 0, "sink", 0.5),
                   (1, 1, "sink", 0.1), (1, 1, "question", 0.3), (1, 1, "image", 0.6)]
    dim, vec = con.execute("SELECT dim, vec FROM queries ORDER BY position LIMIT 1").fetchone()
    assert dim == 8 and vec == list(range(8))
    ks = KeyStore(root)
    assert ks.load("m", "b", 1, "text", kind="query").x.shape == (4, 8)
    assert ks.load_attention("m", "b").num_rows == 6 and ks.inventory.uncommitted == 2
    with pytest.raises(StoreError,
                       match=r"no attention rows for model=m, benchmark=b, layers \[2\]: ingest with --attention"):
        ks.load_attention("m", "b", layers=[2])
    with pytest.raises(StoreError, match=r"no queries for .*ingest with --queries"):
        ks.load("m", "b", 1, "image", kind="query")
    # reopening the run deletes the orphans of every tree
    KeyWriter(root, "r").close()
    assert not list((root / "attention").rglob("part-r-00001.parquet"))
    assert not list((root / "queries").rglob("part-r-00001.parquet"))
    assert KeyStore(root).inventory.uncommitted == 0

"""The store on S3: a real S3 server (moto, 127.0.0.1) holding the same files as a local store must give the
same answers to every reader (KeyStore, inventory, SQL, info, compare), and credentials never show."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.fs as pafs
import pytest
from s3_server import ACCESS_KEY, SECRET_KEY
from store_helpers import write_synthetic_store

from store.catalog import SqlCatalog
from store.errors import StoreError
from store.location import open_location, scrub
from store.reader import KeyStore


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    s3_server.point_aws_at(monkeypatch)
    return s3_server


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3src") / "store"
    write_synthetic_store(root, layers=(1, 2), samples=24, tokens=8, dim=16, shift=0.7, flush_every=6)
    return root


@pytest.fixture
def uploaded(s3_env, local_store):
    """(local path, s3 URI, bucket) of the same store: the local files copied as they are to a new bucket."""
    bucket = s3_env.make_bucket()
    fs, root = pafs.FileSystem.from_uri(f"s3://{bucket}/study/store")
    pafs.copy_files(str(local_store), root, destination_filesystem=fs)
    return local_store, f"s3://{bucket}/study/store", bucket


def _cli(capsys, *argv):
    from keygap_tui.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_reader_and_inventory_answer_the_same_from_s3(uploaded):
    local, uri, _ = uploaded
    a, b = KeyStore(str(local)), KeyStore(uri)
    assert b.location.local is False and b.root.endswith("/study/store")
    assert a.partitions() == b.partitions()
    def files(s):
        return sorted((f.rel, f.rows, f.size) for f in s.inventory.all_files())
    assert files(a) == files(b)
    assert a.samples().equals(b.samples())
    assert a.runs() == b.runs()
    for n, seed in ((None, None), (30, None), (30, 7)):
        x, y = a.load("m", "b", 2, "image", n=n, seed=seed), b.load("m", "b", 2, "image", n=n, seed=seed)
        assert np.array_equal(x.x, y.x) and np.array_equal(x.sample_id, y.sample_id)
        assert np.array_equal(x.position, y.position)
    seg = b.load("m", "b", 1, "text", samples=["s0003", "s0017"])
    assert set(seg.sample_id) == {"s0003", "s0017"} and len(seg) == 16


@pytest.mark.slow
def test_sql_and_info_over_s3_equal_the_local_store(uploaded, capsys):
    local, uri, _ = uploaded
    query = "SELECT layer, modality, count(*) AS n, min(rand) AS r, max(dim) AS d FROM keys GROUP BY ALL ORDER BY ALL"
    from store.sql import query_store

    tables = [query_store(SqlCatalog(str(store)), query) for store in (local, uri)]
    assert tables[0].equals(tables[1]) and tables[0].num_rows == 4
    every = "SELECT * FROM keys ORDER BY layer, modality, sample_id, position"
    assert query_store(SqlCatalog(str(local)), every).equals(query_store(SqlCatalog(uri), every))
    code, out_s3, _ = _cli(capsys, "sql", "SELECT count(*) AS n FROM samples", "--store", uri, "--format", "csv")
    assert code == 0 and out_s3.splitlines() == ['"n"', "24"]
    code, info_s3, _ = _cli(capsys, "info", "--store", uri, "--json")
    code2, info_local, _ = _cli(capsys, "info", "--store", str(local), "--json")
    s3, loc = json.loads(info_s3), json.loads(info_local)
    assert code == code2 == 0 and s3.pop("store") == uri and loc.pop("store") == str(local)
    assert s3 == loc


def test_sql_reads_only_under_the_store_prefix(uploaded, s3_env):
    _, uri, bucket = uploaded
    fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}/")
    with fs.open_output_stream(f"{bucket}/private/secret.csv") as f:
        f.write(b"password\nhunter2\n")
    from store.errors import SqlError
    from store.sql import query_store

    catalog = SqlCatalog(uri)
    for query in (f"SELECT * FROM read_csv('s3://{bucket}/private/secret.csv')",
                  f"SELECT * FROM read_parquet('s3://{bucket}/study/store/keys/**/*.parquet')"):
        with pytest.raises(SqlError, match=r"disabled|external"):
            query_store(catalog, query)


@pytest.mark.slow
def test_compare_over_s3_equals_local_and_is_cached_in_the_bucket(uploaded, capsys, s3_env):
    local, uri, bucket = uploaded
    args = ["compare", "--model", "m", "--benchmark", "b", "--layer", "2", "--metrics", "mmd,js", "--n", "60",
            "--permutations", "20", "--json"]
    code, out_local, _ = _cli(capsys, *args, "--store", str(local))
    code2, out_s3, _ = _cli(capsys, *args, "--store", uri)
    assert code == code2 == 0

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "cached", "created")} for r in rows]

    rows_local, rows_s3 = json.loads(out_local), json.loads(out_s3)
    assert strip(rows_local) == strip(rows_s3) and len(rows_s3) == 2
    cached = [k for k in s3_env.objects(bucket) if k.startswith("study/store/results/part-")]
    assert len(cached) == 2
    _, again, _ = _cli(capsys, *args, "--store", uri)
    assert all(r["cached"] for r in json.loads(again))
    # More keys land in the same partitions (another run's files, uploaded): the answer must be recomputed.
    extra = local.parent / "extra"
    write_synthetic_store(extra, layers=(2,), samples=6, tokens=8, dim=16, seed=5, run_id="run9")
    fs, root = pafs.FileSystem.from_uri(uri)
    for sub in ("keys", "samples"):
        pafs.copy_files(str(extra / sub), f"{root}/{sub}", destination_filesystem=fs)
    _, after, _ = _cli(capsys, *args, "--store", uri)
    assert not any(r["cached"] for r in json.loads(after))
    from store.results import ResultsCache

    assert ResultsCache(KeyStore(uri).location).prune_stale() == 2


@pytest.mark.slow
def test_credentials_never_show_and_uris_with_credentials_are_refused(uploaded, capsys, s3_env):
    _, uri, bucket = uploaded
    outputs = []
    for argv in (["info", "--store", uri], ["sql", "SELECT * FROM runs", "--store", uri, "--format", "json"],
                 ["info", "--store", "s3://no-such-bucket-keygap/store"],
                 ["info", "--store", f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/study/store"],
                 ["info", "--store", f"s3://{bucket}/study/store?secret_key={SECRET_KEY}"]):
        outputs.append(_cli(capsys, *argv))
    assert [code for code, _, _ in outputs] == [0, 0, 2, 2, 2]
    assert "no store at s3://no-such-bucket-keygap/store" in outputs[2][2]
    assert "names credentials" in outputs[3][2] and "carries a credential" in outputs[4][2]
    for _, out, err in outputs:
        assert SECRET_KEY not in out + err and ACCESS_KEY not in out + err
    for key, body in s3_env.objects(bucket).items():
        assert SECRET_KEY.encode() not in body and ACCESS_KEY.encode() not in body, key
    with pytest.raises(StoreError, match="names credentials") as exc:
        open_location(f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/x")
    assert SECRET_KEY not in str(exc.value)
    assert scrub(f"error: key {ACCESS_KEY} secret {SECRET_KEY}") == "error: key *** secret ***"


@pytest.mark.slow
def test_an_unreachable_endpoint_is_one_line_without_secrets(capsys, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: the SDK retries, then fails
    code, out, err = _cli(capsys, "info", "--store", "s3://bucket/store")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "cannot read s3://bucket/store/keygap.json" in err and "AWS_ENDPOINT_URL" in err
    assert SECRET_KEY not in err and ACCESS_KEY not in err


@pytest.mark.slow
def test_report_over_s3_writes_the_numbers_of_the_local_store(uploaded, tmp_path, capsys):
    local, uri, _ = uploaded
    args = ["report", "--models", "m", "--layers", "1,2", "--n", "40", "--permutations", "9", "--replicates", "2",
            "--projection", "pca", "--no-png"]
    assert _cli(capsys, *args, "--store", str(local), "--out", str(tmp_path / "local"))[0] == 0
    assert _cli(capsys, *args, "--store", uri, "--out", str(tmp_path / "s3"))[0] == 0

    def table(d):
        return [{k: v for k, v in r.items() if "second" not in k and k != "cached"}
                for r in json.loads((tmp_path / d / "table.json").read_text())]

    assert table("local") == table("s3") and len(table("s3")) == 2


@pytest.mark.slow
def test_tui_on_an_s3_store_compares_and_queries(uploaded, tmp_path):
    from test_tui_support import SMALL, make_app, settle, sync

    from keygap_tui.analysis import Side, compare

    local, uri, _ = uploaded

    @sync
    async def drive():
        app = make_app(uri, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            await pilot.press("c")
            await settle(app, pilot)
            (row,) = app.query_one("#results").matrix.rows.values()
            rows = [row.measures[m] for m in SMALL.metrics]
            await pilot.press("f5")
            query = "SELECT modality, count(*) AS n FROM keys WHERE layer = 2 GROUP BY 1 ORDER BY 1"
            app.query_one("#sql-editor").text = query
            await pilot.press("ctrl+r")
            await settle(app, pilot)
            grid = app.query_one("#sql-grid")
            return app.selection.layer, rows, [[str(c) for c in grid.get_row_at(i)] for i in range(grid.row_count)]

    layer, rows, sql_rows = drive()
    direct = compare(str(local), Side("m", "b", layer, "image"), Side("m", "b", layer, "text"), SMALL.metrics, SMALL.n,
                     SMALL.seed, permutations=SMALL.permutations, use_cache=False)
    assert [r["value"] for r in rows] == pytest.approx([d.result.value for d in direct]) and len(rows) == 2
    assert sql_rows == [["image", "192"], ["text", "192"]]


def test_compact_refuses_an_s3_store_and_leaves_it_alone(uploaded, capsys, s3_env):
    _, uri, bucket = uploaded
    before = s3_env.objects(bucket)
    code, out, err = _cli(capsys, "compact", "--store", uri)
    assert code == 2 and out == ""
    assert "keygap compact works on a local or shared folder, not s3://" in err and len(err.strip().splitlines()) == 1
    assert s3_env.objects(bucket) == before

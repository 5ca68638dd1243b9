"""The attention analysis (FastV's allocation, the layer x head matrix, the gap/deficit correlation) against
plain SQL over the same store (DuckDB, the `attention` view) and numpy on the stored keys; the report's part."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.run import ingest
from keygap_tui.analysis import report
from keygap_tui.analysis.attention import allocation, gap_deficit_correlation, head_matrix
from store.reader import KeyStore
from store.sql import query_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention") / "store"
    for model in ("tiny:llava", "tiny:qwen2.5-vl"):
        ingest(model, "sample", str(root), layers="all", queries="text", attention=True, limit=6, progress=False)
    return root


def _sql(store, statement):
    t = query_store(str(store), statement)
    return [dict(zip(t.column_names, row)) for row in zip(*(t.column(c).to_pylist() for c in t.column_names))]


@pytest.mark.slow
def test_allocation_equals_the_readme_sql(store):
    rows = _sql(store, """
        SELECT model, layer, bucket, avg(mass) AS attention, avg(share) AS tokens FROM (
          SELECT model, layer, sample_id, head, sum(mass) AS mass, sum(token_share) AS share,
                 CASE WHEN "group" = 'sink' THEN 'sink' ELSE modality END AS bucket
          FROM attention WHERE query = 'last' GROUP BY ALL)
        GROUP BY ALL""")
    ks = KeyStore(str(store))
    for model in ("tiny-llava", "tiny-qwen2.5-vl"):
        a = allocation(ks, model, "sample")
        assert a.layers == [0, 1, 2, 3] and {"image", "text", "sink"} <= set(a.buckets)
        assert np.allclose(a.mass.sum(axis=1), 1.0, atol=1e-5)  # every (sample, head) distributes all its attention
        for r in rows:
            if r["model"] == model and r["bucket"] in ("image", "text", "sink"):
                i, j = a.layers.index(r["layer"]), a.buckets.index(r["bucket"])
                assert a.mass[i, j] == pytest.approx(r["attention"], abs=1e-12)
                assert a.share[i, j] == pytest.approx(r["tokens"], abs=1e-12)


@pytest.mark.slow
def test_head_matrix_equals_sql_and_numpy(store):
    ks = KeyStore(str(store))
    m = head_matrix(ks, "tiny-qwen2.5-vl", "sample", n=None)
    assert m.layers == [0, 1, 2, 3] and m.heads == [0, 1]
    rows = _sql(store, """
        SELECT layer, head // 2 AS kv, avg(mass) AS mass, avg(share) AS share FROM (
          SELECT layer, sample_id, head, sum(mass) AS mass, sum(token_share) AS share FROM attention
          WHERE model = 'tiny-qwen2.5-vl' AND query = 'last' AND modality = 'image' AND "group" <> 'sink'
          GROUP BY ALL) GROUP BY ALL""")
    assert len(rows) == 8
    for r in rows:
        assert m.image_mass[m.layers.index(r["layer"]), r["kv"]] == pytest.approx(r["mass"], abs=1e-12)
        assert m.image_share[m.layers.index(r["layer"]), r["kv"]] == pytest.approx(r["share"], abs=1e-12)
    image = ks.load("tiny-qwen2.5-vl", "sample", 2, "image").x.astype(np.float64)
    text = ks.load("tiny-qwen2.5-vl", "sample", 2, "text").x.astype(np.float64)
    hd = image.shape[1] // 2
    for g in (0, 1):
        by_hand = np.linalg.norm(image[:, g * hd:(g + 1) * hd].mean(0) - text[:, g * hd:(g + 1) * hd].mean(0))
        assert m.key_gap[2, g] == pytest.approx(by_hand, rel=1e-9)
    corr = gap_deficit_correlation(m, permutations=200)
    assert corr.n == 8 and corr.strata == 4 and corr.arrangements == 16
    assert corr.r == pytest.approx(np.corrcoef(m.key_gap.ravel(), m.deficit.ravel())[0, 1], abs=1e-12)
    assert 1 / 201 <= corr.p_value <= 1


@pytest.mark.slow
def test_report_adds_the_attention_part(store, tmp_path):
    out = tmp_path / "report"
    result = report(store, out, png=False, n=40, permutations=0, replicates=1, projection_n=40, projection_method="pca")
    names = {p.name for p in result.files}
    assert {"attention_figure.txt", "attention_figure.csv", "heads_table.csv", "heads_table.md"} <= names
    figure = (out / "attention_figure.txt").read_text()
    assert figure.count("attention of the last prompt token") == 2 and "image tokens" in figure
    table = (out / "heads_table.csv").read_text().splitlines()
    assert table[0] == "model,benchmark,layer,kv_head,key_gap,image_attention,image_tokens,deficit"
    assert len(table) == 1 + 4 * 2 * 2  # two models x four layers x two kv heads
    meta = json.loads((out / "report.json").read_text())
    corr = meta["parameters"]["attention"]["correlation"]
    assert "shuffled among the heads of each layer" in corr["over"]
    assert set(corr["results"]) == {"tiny-llava/sample", "tiny-qwen2.5-vl/sample"}
    assert any("key gap vs image attention deficit over 8 (layer, head) cells" in n for n in result.notes)

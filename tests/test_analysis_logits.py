"""`keygap compare --metrics logits` on a real ingest: the numbers equal the naive float64 loop run over the
stored queries and keys, read back independently of the analysis code."""
from __future__ import annotations

import json

import pytest
from test_ingest_attention import _plain
from test_stats_logits import _naive

from ingest.run import ingest
from keygap_tui.analysis.cli import main as analysis_main
from keygap_tui.stats.logits import HeadGeometry, LabelledVectors
from store.reader import KeyStore


@pytest.mark.slow
def test_compare_logits_equals_the_naive_loop(tmp_path, capsys):
    lm = _plain("tiny:qwen2.5-vl")
    ingest(lm, "sample", str(tmp_path), layers="2", queries="text", batch_size=2, limit=3, progress=False)
    code = analysis_main(["--store", str(tmp_path), "compare", "--model", lm.label, "--layer", "2", "--metrics",
                          "logits", "--n", "all", "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    ks = KeyStore(str(tmp_path))
    (run,) = ks.runs()
    geometry = HeadGeometry(run["num_heads"], run["num_kv_heads"], run["head_dim"], run["attention_scaling"])

    def vectors(modality, kind="key"):
        sl = ks.load(lm.label, "sample", 2, modality, kind=kind)
        return LabelledVectors(sl.x, sl.sample_id, sl.position)

    gap, cent = _naive(vectors("text", "query"), vectors("image"), vectors("text"), geometry, range(4))
    assert row["metric"] == "logits" and row["head"] is None and len(gap) == row["extra"]["n_queries"] > 10
    assert row["value"] == pytest.approx(gap.mean(), abs=1e-9)
    assert row["extra"]["centroid"] == pytest.approx(cent.mean(), abs=1e-9)
    assert row["extra"]["share_explained"] == pytest.approx(cent.mean() / gap.mean(), rel=1e-7)

    code = analysis_main(["--store", str(tmp_path), "compare", "--model", lm.label, "--layer", "2", "--metrics",
                          "logits", "--n", "all", "--heads", "1,3"])
    text = capsys.readouterr().out
    assert code == 0 and "query head 3: gap" in text
    assert f"{gap[:, 3].mean():.6g}" in text


def test_logits_without_queries_says_to_ingest_them(tmp_path, capsys):
    ingest(_plain("tiny:llava"), "sample", str(tmp_path), layers="1", batch_size=2, limit=2, progress=False)
    code = analysis_main(["--store", str(tmp_path), "compare", "--model", "tiny-llava", "--layer", "1", "--metrics",
                          "logits"])
    assert code == 2
    assert "ingest with --queries" in capsys.readouterr().err

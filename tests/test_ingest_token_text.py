"""Token text recorded at ingest: every kept token's id reads as the run's own tokenizer decodes it, in
the samples (commit markers) and the SQL view `tokens`, and the analysis lookup agrees."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ingest import tiny
from ingest.run import ingest
from keygap_tui.analysis.sides import open_store
from keygap_tui.analysis.tokens import token_texts
from store.sql import query_store


@pytest.mark.slow
def test_token_text_is_the_tokenizers_own_decoding_and_sql_visible(tmp_path):
    store = tmp_path / "s"
    ingest("tiny:llava", "sample", str(store), layers="1", tokens="4:6", limit=5, progress=False)
    _, processor = tiny.build_config_and_processor("tiny:llava")
    tok = processor.tokenizer
    samples = pq.read_table(store / "samples")
    keys = query_store(str(store), "SELECT DISTINCT sample_id, token_id FROM keys")
    kept: dict[str, set[int]] = {}
    for sid, tid in zip(keys["sample_id"].to_pylist(), keys["token_id"].to_pylist()):
        kept.setdefault(sid, set()).add(tid)
    for sid, text in zip(samples["sample_id"].to_pylist(), samples["token_text"].to_pylist()):
        pairs = {int(k): v for k, v in json.loads(text).items()}
        assert set(pairs) == kept[sid]  # exactly the kept tokens of that sample
        assert all(v == tok.decode([k]) for k, v in pairs.items())
    rows = query_store(str(store), "SELECT k.token_id, t.text FROM keys k JOIN tokens t USING (model, token_id) "
                                   "WHERE k.modality = 'text'")
    pairs = zip(rows["token_id"].to_pylist(), rows["text"].to_pylist(), strict=True)
    assert rows.num_rows > 0 and all(t == tok.decode([i]) for i, t in pairs)
    lookup = token_texts(open_store(str(store)), "tiny:llava")
    assert lookup and all(v == tok.decode([k]) for k, v in lookup.items())
